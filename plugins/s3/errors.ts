import { FiledgeError } from '../../core/index.js'

/** What the SDK (and Node, for a socket) puts on a failed call; described, not imported. */
interface SdkFailure {
  readonly name?: string
  /** Node's errno code (`ECONNREFUSED`) on a network failure. */
  readonly code?: string
  readonly message?: string
  readonly $metadata?: { readonly httpStatusCode?: number }
}

function failure(error: unknown): SdkFailure {
  return typeof error === 'object' && error !== null ? (error as SdkFailure) : { message: String(error) }
}

function status(error: unknown): number | undefined {
  return failure(error).$metadata?.httpStatusCode
}

/**
 * The object is not there: GetObject says NoSuchKey, HeadObject (a response
 * without a body) only NotFound or a bare 404. A missing bucket answers
 * HeadObject with the same bare 404, so `stat` in a deleted bucket reads as
 * a deleted file; `connect` is where a missing bucket is reported.
 */
export function isMissing(error: unknown): boolean {
  const { name } = failure(error)
  return name === 'NoSuchKey' || name === 'NotFound' || (status(error) === 404 && name !== 'NoSuchBucket')
}

/** An `If-Match` (or `x-amz-copy-source-if-match`) the object's ETag no longer satisfies. */
export function isPreconditionFailed(error: unknown): boolean {
  return failure(error).name === 'PreconditionFailed' || status(error) === 412
}

/** A call the store does not implement: some S3-compatible stores lack DeleteObjects, for one. */
export function isNotImplemented(error: unknown): boolean {
  return failure(error).name === 'NotImplemented' || status(error) === 501
}

const ACCESS_DENIED = new Set(['AccessDenied', 'InvalidAccessKeyId', 'SignatureDoesNotMatch', 'ExpiredToken', 'InvalidToken', 'AllAccessDisabled', 'Forbidden'])
const UNREACHABLE = new Set(['ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EPIPE'])

/**
 * An SDK failure as a FiledgeError naming what failed (`where`: the source
 * or the object) and what to do. The SDK's own messages never hold the
 * secret key (it signs, it never sends it) and filedge's calls are signed
 * in headers, not presigned URLs; the message still goes through `redact`
 * like every FiledgeError's. `reach` names the endpoint for network errors.
 */
export function s3Error(where: string, reach: string, error: unknown): FiledgeError {
  const { name = 'Error', code, message } = failure(error)
  const httpStatus = status(error)
  let reason: string
  if (name === 'NoSuchBucket') reason = 'the bucket does not exist'
  else if (ACCESS_DENIED.has(name) || httpStatus === 403) {
    reason = `access denied (${name}): check the credentials the AWS SDK found (AWS_ACCESS_KEY_ID, profile…) and their permissions on the bucket`
  } else if (name === 'CredentialsProviderError') {
    reason = 'no credentials: the AWS SDK found none (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or run with a role)'
  } else if ((code !== undefined && UNREACHABLE.has(code)) || name === 'TimeoutError') reason = `cannot reach ${reach} (${code ?? name})`
  else reason = `${name}${httpStatus === undefined ? '' : ` (HTTP ${httpStatus})`}: ${message ?? 'no message'}`
  return new FiledgeError('PLUGIN_ERROR', `${where}: ${reason}`, { plugin: 's3', cause: error })
}
