// npm `e2b` 2.45.0 (installed as the alias `e2b-2.45`), unmodified, against envd: the last release
// that creates with POST /sandboxes instead of /v2/sandboxes. See lib/harness.js for SDK_MODE.
import * as sdk from 'e2b-2.45'
import { defineSuite } from './lib/suite.js'

defineSuite({ name: 'e2b-2.45', envPrefix: 'E2B', sdk })
