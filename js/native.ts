// The generated napi-rs loader (../index.js) picks the prebuilt binary for
// this platform, or the one built from source next to it.
import native = require('../index.js')

export default native
