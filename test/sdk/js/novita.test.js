// npm `novita-sandbox`, unmodified, against envd: see lib/harness.js for SDK_MODE.
import * as sdk from 'novita-sandbox'
import { defineSuite } from './lib/suite.js'

defineSuite({ name: 'novita', envPrefix: 'NOVITA', sdk })
