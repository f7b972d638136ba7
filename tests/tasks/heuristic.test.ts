import { describe, expect, it } from 'vitest';
import { formatScore, groupDiversity, keywordScore, lengthScore, repetitionScore, words } from '../../src/tasks/heuristic.js';

describe('heuristic reward components', () => {
  it('splits lower-case words on anything but letters, digits and apostrophes', () => {
    expect(words("The Fox's den, 2 MOONS!")).toEqual(["the", "fox's", 'den', '2', 'moons']);
    expect(words(' .,; ')).toEqual([]);
  });

  it('keywordScore: share of keywords used as whole words, case-insensitively', () => {
    expect(keywordScore('the fox sees the moon.', ['fox', 'moon'])).toBe(1);
    expect(keywordScore('the Fox sleeps.', ['fox', 'moon'])).toBe(0.5);
    expect(keywordScore('foxes and moonlight', ['fox', 'moon'])).toBe(0); // substrings do not count
    expect(keywordScore('anything', [])).toBe(1);
  });

  it('lengthScore: 1 at the target, linear down to 0 at 0 and 2x the target', () => {
    expect(lengthScore('a b c d', 4)).toBe(1);
    expect(lengthScore('a b', 4)).toBe(0.5);
    expect(lengthScore('a b c d e f', 4)).toBe(0.5);
    expect(lengthScore('', 4)).toBe(0);
    expect(lengthScore('a b c d e f g h i j', 4)).toBe(0);
  });

  it('repetitionScore: share of distinct word bigrams', () => {
    expect(repetitionScore('the red fox sees the moon')).toBe(1);
    expect(repetitionScore('fox fox fox')).toBe(0.5);
    expect(repetitionScore('the fox the fox the fox')).toBe(0.4); // 2 distinct of 5 bigrams
    expect(repetitionScore('fox')).toBe(1);
    expect(repetitionScore('')).toBe(0);
  });

  it('formatScore: 1 on a match, also for a stateful /g pattern called twice', () => {
    const g = /^[a-z ]+\.$/g;
    expect(formatScore('a fox.', g)).toBe(1);
    expect(formatScore('a fox.', g)).toBe(1);
    expect(formatScore('A fox', /^[a-z ]+\.$/)).toBe(0);
  });

  it('groupDiversity: 1 - mean Jaccard similarity to the others of the group', () => {
    // sets {a,b}, {a,b}, {c}: J(0,1) = 1, J(0,2) = J(1,2) = 0
    expect(groupDiversity(['a b', 'b a', 'c'])).toEqual([0.5, 0.5, 1]);
    // {a,b,c} vs {a,d}: J = 1/4
    expect(groupDiversity(['a b c', 'a d'])).toEqual([0.75, 0.75]);
    expect(groupDiversity(['same', 'same', 'same'])).toEqual([0, 0, 0]);
    expect(groupDiversity(['alone'])).toEqual([1]);
    expect(groupDiversity(['', ''])).toEqual([0, 0]); // two empty texts are identical
  });
});
