export type LogLevel = 'debug' | 'info' | 'warn' | 'error'

export interface LogEntry {
  readonly level: LogLevel
  readonly message: string
  /** Plugin that logged, when a plugin did. */
  readonly plugin?: string
}

export interface Logger {
  debug(message: string): void
  info(message: string): void
  warn(message: string): void
  error(message: string): void
}

export function createLogger(emit: (entry: LogEntry) => void, plugin?: string): Logger {
  return {
    debug: (message) => emit({ level: 'debug', message, plugin }),
    info: (message) => emit({ level: 'info', message, plugin }),
    warn: (message) => emit({ level: 'warn', message, plugin }),
    error: (message) => emit({ level: 'error', message, plugin }),
  }
}
