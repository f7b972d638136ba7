/**
 * A reward module: reward functions of your own, added to a built-in task's. Point the config at
 * it with `reward_module: examples/my-reward.mjs` (see examples/my-reward.yaml). TypeScript works
 * the same way (`my-reward.ts`); the learner and every worker import it from their working
 * directory, each worker in its reward threads.
 *
 * Export an array (as here), or plain functions (`export function brevity(prompt, completion,
 * meta) { ... }`, weight 1), or { weight, scope, fn } objects named by their export.
 *
 *   scope 'completion' (default)  fn(prompt, completion, meta) -> number, once per completion
 *   scope 'group'                 fn(prompt, completions, meta) -> one number per completion,
 *                                 once per group (the completions sampled for one prompt)
 *
 * Either may be async. Return a finite number, or null for "not applicable"; throwing or NaN
 * is an error (logged, retried up to reward_retries times, never turned into 0). Each function
 * is logged on its own in metrics.jsonl (rewards.<name>, rewardStds.<name>) and weighted by
 * `weight` unless reward_weights in the config says otherwise.
 */

/** 1 for completions of at most `max` characters, falling to 0 at twice that. */
function brevity(_prompt, completion) {
  const max = 32;
  return completion.length <= max ? 1 : Math.max(0, 2 - completion.length / max);
}

/**
 * A group reward: 1 for a completion whose first two words no other completion of its group
 * starts with, else 0. It rewards variety in how the sentences open, something no reward that
 * sees one completion at a time can measure.
 */
function distinctOpenings(_prompt, completions) {
  const openings = completions.map((c) => c.split(/\s+/).slice(0, 2).join(' '));
  return openings.map((o, i) => (openings.some((x, j) => j !== i && x === o) ? 0 : 1));
}

export default [
  { name: 'brevity', weight: 0.1, fn: brevity },
  { name: 'distinct_openings', weight: 0.1, scope: 'group', fn: distinctOpenings },
];
