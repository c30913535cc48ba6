export { UblkError } from './errors'
export { kernelFeatures, featureNames } from './features'
export type { KernelFeatures } from './features'
