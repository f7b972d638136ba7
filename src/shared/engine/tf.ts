/**
 * The one place that imports TensorFlow.js. Everything else imports `tf` from here, so the
 * engine can swap the implementation (tfjs-node(-gpu) when installed, else wasm + native BLAS)
 * without touching model or training code. See ./backend.ts for the selection.
 */
import * as tf from '@tensorflow/tfjs';

export { tf };
export type {
  Tensor,
  Scalar,
  Tensor1D,
  Tensor2D,
  Tensor3D,
  Tensor4D,
  Variable,
  Rank,
  NamedTensorMap,
  TensorContainer,
} from '@tensorflow/tfjs';
