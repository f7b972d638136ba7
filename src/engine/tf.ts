/**
 * The one place that imports TensorFlow.js. Everything else imports `tf` from here, so the
 * engine can swap the implementation (tfjs-node(-gpu) when installed, else wasm + native BLAS)
 * without touching model or training code. See ./backend.ts for the selection.
 */
import * as tf from '@tensorflow/tfjs';
import { installEagerBackprop } from './eager-backprop.js';

// tfjs's own "install tfjs-node" banner (printed on the first use of its cpu backend) would
// contradict the engine's start-up line, which names the chosen backend and the fix itself.
tf.env().set('PROD', true);

// backward passes free each node's saved tensors and consumed gradients as they go (see there)
installEagerBackprop(tf);

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
