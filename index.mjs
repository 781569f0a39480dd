// The ES module entry: the same objects as the CommonJS one.
import lib from './index.js'

export const { initQueue, openQueue, eventCallbacks } = lib
export default lib
