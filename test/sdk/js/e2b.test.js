// npm `e2b`, unmodified, against envd: see lib/harness.js for SDK_MODE.
import * as sdk from 'e2b'
import { defineSuite } from './lib/suite.js'

defineSuite({ name: 'e2b', envPrefix: 'E2B', sdk })
