/** Where filedge looks for a config, in order. Apart from the loader so `init` can name them without loading cosmiconfig. */
export const CONFIG_SEARCH_PLACES = [
  'filedge.config.ts',
  'filedge.config.mts',
  'filedge.config.js',
  'filedge.config.mjs',
  'filedge.config.json',
  '.filedgerc',
  '.filedgerc.json',
  '.filedgerc.yaml',
  '.filedgerc.yml',
  '.filedgerc.js',
  '.filedgerc.mjs',
  '.filedgerc.ts',
  '.filedgerc.mts',
  'package.json',
]
