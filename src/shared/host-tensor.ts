/**
 * Tensors on the host, as plain typed arrays: what checkpoints hold and what travels on the wire.
 * Defined here, not in src/model, because the wire format (weights-wire.ts, ws-client.ts) carries
 * them and src/shared imports nothing from the other folders; src/model re-exports them.
 */

/** A named float32 tensor on the host. `data.length` is the product of `shape`. */
export interface HostTensor {
  shape: number[];
  data: Float32Array;
}

/** Parameters by Hugging Face name, e.g. `model.layers.0.self_attn.q_proj.weight`. */
export type NamedHostTensors = Map<string, HostTensor>;
