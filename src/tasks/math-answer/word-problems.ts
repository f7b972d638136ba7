/**
 * Grade-school word problems generated from templates, in GSM8K's shape: a question, and a worked
 * solution whose last line is `#### <answer>`. They are what the `math-answer` task trains on when
 * no `dataset` is given, and the source of the sample file examples/data/math-sample.jsonl
 * (written by tools/make-math-sample.mjs; a test checks the file matches this generator), so the
 * pretrained-model example runs with no download.
 *
 * Every template draws small integers from the Rng and computes the answer exactly; answers are
 * integers or exact decimals (money in cents), so the extractor's equality is exact.
 */
import type { Rng } from '../../shared/rng.js';

export interface WordProblem {
  question: string;
  /** Worked solution ending in "#### <answer>" (GSM8K's format). */
  answer: string;
}

const NAMES = ['Ava', 'Ben', 'Chloe', 'Dev', 'Elena', 'Farid', 'Grace', 'Hugo', 'Iris', 'Jonas', 'Kemi', 'Liam', 'Maya', 'Noor', 'Omar', 'Priya'];
const FRUITS = ['apples', 'oranges', 'pears', 'plums', 'lemons', 'peaches'];
const ITEMS = ['notebooks', 'pencils', 'stickers', 'marbles', 'postcards', 'badges'];

const money = (cents: number): string => {
  const s = (cents / 100).toFixed(2);
  return s.endsWith('.00') ? s.slice(0, -3) : s;
};

type Template = (rng: Rng) => WordProblem;

const TEMPLATES: readonly Template[] = [
  (rng) => {
    const [who, fruit] = [rng.pick(NAMES), rng.pick(FRUITS)];
    const boxes = rng.int(2, 9);
    const per = rng.int(3, 15);
    const eaten = rng.int(1, per);
    const total = boxes * per;
    return {
      question: `${who} buys ${boxes} boxes of ${fruit} with ${per} ${fruit} in each box and eats ${eaten} of them. How many ${fruit} are left?`,
      answer: `${who} buys ${boxes} * ${per} = ${total} ${fruit}.\nAfter eating ${eaten}, ${total} - ${eaten} = ${total - eaten} are left.\n#### ${total - eaten}`,
    };
  },
  (rng) => {
    const who = rng.pick(NAMES);
    const price = rng.int(2, 12) * 25; // cents
    const count = rng.int(2, 8);
    const paid = Math.ceil((price * count) / 500) * 500 + rng.pick([0, 500, 1000]);
    const change = paid - price * count;
    return {
      question: `A pen costs $${money(price)}. ${who} buys ${count} pens and pays with $${money(paid)}. How much change, in dollars, does ${who} get?`,
      answer: `${count} pens cost ${count} * $${money(price)} = $${money(price * count)}.\nThe change is $${money(paid)} - $${money(price * count)} = $${money(change)}.\n#### ${money(change)}`,
    };
  },
  (rng) => {
    const who = rng.pick(NAMES);
    const speed = rng.int(3, 12) * 5;
    const hours = rng.int(2, 6);
    const back = rng.int(1, hours - 1 || 1);
    return {
      question: `${who} drives at ${speed} miles per hour for ${hours} hours, then drives back toward home for ${back} hour${back === 1 ? '' : 's'} at the same speed. How many miles from home is ${who} now?`,
      answer: `Out: ${speed} * ${hours} = ${speed * hours} miles.\nBack: ${speed} * ${back} = ${speed * back} miles.\n${speed * hours} - ${speed * back} = ${speed * (hours - back)} miles from home.\n#### ${speed * (hours - back)}`,
    };
  },
  (rng) => {
    const a = rng.pick(NAMES);
    const other = rng.pick(NAMES.filter((n) => n !== a));
    const item = rng.pick(ITEMS);
    const first = rng.int(4, 30);
    const times = rng.int(2, 4);
    const second = first * times;
    return {
      question: `${a} has ${first} ${item}. ${other} has ${times} times as many ${item} as ${a}. How many ${item} do they have together?`,
      answer: `${other} has ${first} * ${times} = ${second} ${item}.\nTogether: ${first} + ${second} = ${first + second}.\n#### ${first + second}`,
    };
  },
  (rng) => {
    const who = rng.pick(NAMES);
    const pages = rng.int(4, 12) * 10;
    const perDay = rng.pick([5, 10, 20]);
    const done = rng.int(1, pages / perDay - 1);
    const left = pages - perDay * done;
    return {
      question: `A book has ${pages} pages. ${who} reads ${perDay} pages a day for ${done} day${done === 1 ? '' : 's'}. How many more days does ${who} need to finish the book at the same pace?`,
      answer: `${who} has read ${perDay} * ${done} = ${perDay * done} pages, so ${pages} - ${perDay * done} = ${left} pages are left.\n${left} / ${perDay} = ${left / perDay} days.\n#### ${left / perDay}`,
    };
  },
  (rng) => {
    const groups = rng.int(2, 5);
    const perGroup = rng.pick([2, 4, 8]); // students per group: divides 8, so slices split evenly
    const students = groups * perGroup;
    const perGroupPizza = rng.int(1, 4);
    const slices = perGroupPizza * 8 * groups;
    return {
      question: `A class of ${students} students splits into ${groups} equal groups. Each group gets ${perGroupPizza} pizzas cut into 8 slices. How many slices does each student get if the slices are shared equally?`,
      answer: `Each group gets ${perGroupPizza} * 8 = ${perGroupPizza * 8} slices, so ${groups} groups get ${slices} slices.\n${slices} / ${students} = ${slices / students} slices each.\n#### ${slices / students}`,
    };
  },
  (rng) => {
    const who = rng.pick(NAMES);
    const start = rng.int(20, 90);
    const spent = rng.int(5, start - 5);
    const earned = rng.int(3, 40);
    return {
      question: `${who} had $${start}. ${who} spent $${spent} on a game and then earned $${earned} walking dogs. How many dollars does ${who} have now?`,
      answer: `$${start} - $${spent} = $${start - spent}.\n$${start - spent} + $${earned} = $${start - spent + earned}.\n#### ${start - spent + earned}`,
    };
  },
  (rng) => {
    const length = rng.int(3, 20);
    const width = rng.int(2, length);
    const cost = rng.int(2, 9);
    return {
      question: `A garden is ${length} meters long and ${width} meters wide. Fencing costs $${cost} per meter. How many dollars does it cost to fence all around the garden?`,
      answer: `The perimeter is 2 * (${length} + ${width}) = ${2 * (length + width)} meters.\n${2 * (length + width)} * $${cost} = $${2 * (length + width) * cost}.\n#### ${2 * (length + width) * cost}`,
    };
  },
  (rng) => {
    const who = rng.pick(NAMES);
    const temp = rng.int(-8, 6);
    const rise = rng.int(2, 15);
    const fall = rng.int(1, 20);
    const end = temp + rise - fall;
    return {
      question: `At 6 am the temperature was ${temp} degrees. By noon it rose ${rise} degrees, and by midnight it fell ${fall} degrees from the noon temperature. ${who} wants to know the temperature at midnight, in degrees.`,
      answer: `Noon: ${temp} + ${rise} = ${temp + rise}.\nMidnight: ${temp + rise} - ${fall} = ${end}.\n#### ${end}`,
    };
  },
  (rng) => {
    const who = rng.pick(NAMES);
    const item = rng.pick(ITEMS);
    const total = rng.int(2, 10) * 12;
    const gaveFraction = rng.pick([2, 3, 4]);
    const gave = total / gaveFraction;
    const kept = total - gave;
    return {
      question: `${who} collected ${total} ${item} and gave 1/${gaveFraction} of them to a friend. How many ${item} does ${who} keep?`,
      answer: `${who} gave away ${total} / ${gaveFraction} = ${gave} ${item}.\n${total} - ${gave} = ${kept}.\n#### ${kept}`,
    };
  },
];

/** One problem drawn from `rng`: a template, then its numbers. */
export function wordProblem(rng: Rng): WordProblem {
  return rng.pick(TEMPLATES)(rng);
}

export const WORD_PROBLEM_TEMPLATES = TEMPLATES.length;

/** Seed and size of examples/data/math-sample.jsonl. */
export const MATH_SAMPLE = { seed: 20_240_601, rows: 240 } as const;

/**
 * The rows of the sample file, in order, as JSONL lines (`{"question": ..., "answer": ...}`,
 * GSM8K's field names). Duplicated questions are skipped so the file holds distinct problems.
 */
export function mathSampleLines(rng: Rng, rows: number): string[] {
  const seen = new Set<string>();
  const out: string[] = [];
  for (let guard = 0; out.length < rows && guard < rows * 100; guard++) {
    const p = wordProblem(rng);
    if (seen.has(p.question)) continue;
    seen.add(p.question);
    out.push(JSON.stringify({ question: p.question, answer: p.answer }));
  }
  return out;
}
