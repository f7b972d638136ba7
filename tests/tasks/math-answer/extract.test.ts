import { describe, expect, it } from 'vitest';
import { answersEqual, extractAnswer, formatScore, lastBoxed, parseAnswerNumber, parseDecimal } from '../../../src/tasks/math-answer/extract.js';

const value = (text: string): string | null => extractAnswer(text)?.value?.toString() ?? null;

describe('extractAnswer: where the answer is taken from', () => {
  it('reads <answer>, \\boxed{} and #### in that order of precedence', () => {
    expect(extractAnswer('<think>6*7</think><answer>42</answer>')).toMatchObject({ source: 'answer_tag', text: '42' });
    expect(extractAnswer('so the total is \\boxed{42}.')).toMatchObject({ source: 'boxed', text: '42' });
    expect(extractAnswer('Natalia sold 48/2 = 24 clips.\n#### 72')).toMatchObject({ source: 'hashes', text: '72' });
    // an <answer> beats a box elsewhere, a box beats ####
    expect(value('\\boxed{1} <answer>2</answer>')).toBe('2');
    expect(value('#### 3\n\\boxed{4}')).toBe('4');
  });

  it('takes the last occurrence of a marker (the one the model committed to)', () => {
    expect(value('<answer>12</answer> wait, no: <answer>13</answer>')).toBe('13');
    expect(value('\\boxed{5} ... actually \\boxed{6}')).toBe('6');
    expect(value('#### 7\n#### 8')).toBe('8');
  });

  it('balances braces inside \\boxed{} and skips a box cut off before it closes', () => {
    expect(lastBoxed('\\boxed{\\frac{1}{2}}')).toBe('\\frac{1}{2}');
    expect(value('\\boxed{\\frac{1}{2}}')).toBe('1/2');
    expect(value('\\boxed{3} and then \\boxed{\\frac{1}{')).toBe('3'); // truncated at max_gen_len
    expect(value('\\fbox{9}')).toBe('9');
  });

  it('reads a \\boxed{} inside <answer>', () => {
    expect(value('<answer>\\boxed{17}</answer>')).toBe('17');
  });

  it('gives null without any marker, and a null value for a marker holding no number', () => {
    expect(extractAnswer('The answer is 42.')).toBeNull(); // a bare number is not an answer
    expect(extractAnswer('<answer>forty-two</answer>')).toMatchObject({ source: 'answer_tag', value: null });
    expect(extractAnswer('<answer>42')).toBeNull(); // unclosed tag
    expect(extractAnswer('')).toBeNull();
  });

  it('stops #### at the end of its line', () => {
    expect(value('#### 72\nThe remaining text 99')).toBe('72');
  });
});

describe('parseAnswerNumber: exact values', () => {
  const cases: [string, string | null][] = [
    ['42', '42'],
    ['-7', '-7'],
    ['+3', '3'],
    ['\u22125', '-5'], // unicode minus
    ['1,234,567', '1234567'],
    ['1,234.50', '2469/2'],
    ['3.50', '7/2'],
    ['.5', '1/2'],
    ['-0.25', '-1/4'],
    ['0.0', '0'],
    ['3/4', '3/4'],
    ['-6/8', '-3/4'],
    ['6/-8', '-3/4'],
    ['\\frac{3}{4}', '3/4'],
    ['\\dfrac{-3}{4}', '-3/4'],
    ['\\tfrac34', '3/4'],
    ['-\\frac{1}{2}', '-1/2'],
    ['$18', '18'],
    ['\\$1,000', '1000'],
    ['18.', '18'],
    ['45%', '45'],
    ['12 \\text{ apples}', '12'],
    ['{42}', '42'],
    ['1\\!000', '1000'],
    ['She has 42 apples.', '42'],
    ['10 - 3 = 7', '7'],
    ['5/0', null], // zero denominator
    ['forty-two', null],
    ['', null],
  ];
  it.each(cases)('%j -> %j', (text, want) => {
    expect(parseAnswerNumber(text)?.toString() ?? null).toBe(want);
  });

  it('reads commas only as thousands groups', () => {
    expect(parseDecimal('1,23')).toBeNull();
    expect(parseDecimal('12,345')?.toString()).toBe('12345');
    expect(parseDecimal('1234,567')).toBeNull();
  });

  it('compares answers as rationals: 0.5 = 1/2 = \\frac{2}{4}, and a missing number equals nothing', () => {
    const half = parseAnswerNumber('0.5');
    expect(answersEqual(half, parseAnswerNumber('1/2'))).toBe(true);
    expect(answersEqual(half, parseAnswerNumber('\\frac{2}{4}'))).toBe(true);
    expect(answersEqual(half, parseAnswerNumber('0.50001'))).toBe(false);
    expect(answersEqual(null, null)).toBe(false);
    expect(answersEqual(parseAnswerNumber('-0'), parseAnswerNumber('0'))).toBe(true);
  });

  it('keeps large values exact (no floating point)', () => {
    expect(parseAnswerNumber('9007199254740993')?.toString()).toBe('9007199254740993');
    expect(parseAnswerNumber('0.1')!.add(parseAnswerNumber('0.2')!).equals(parseAnswerNumber('0.3')!)).toBe(true);
  });
});

describe('formatScore: the <think></think><answer></answer> structure', () => {
  it('scores the R1 format 1, whitespace between and around the blocks allowed', () => {
    expect(formatScore('<think>6*7=42</think><answer>42</answer>')).toBe(1);
    expect(formatScore('<think>\n6*7=42\n</think>\n<answer>\n42\n</answer>\n')).toBe(1);
  });

  it('scores 0 for anything else', () => {
    expect(formatScore('<answer>42</answer>')).toBe(0); // no think
    expect(formatScore('<think>x</think>')).toBe(0); // no answer
    expect(formatScore('<answer>42</answer><think>x</think>')).toBe(0); // wrong order
    expect(formatScore('Sure! <think>x</think><answer>42</answer>')).toBe(0); // text before
    expect(formatScore('<think>x</think><answer>42</answer> Hope this helps')).toBe(0); // text after
    expect(formatScore('<think>x</think><answer>1</answer><answer>2</answer>')).toBe(0); // two answers
    expect(formatScore('<think>a<think>b</think><answer>1</answer>')).toBe(0); // nested think
    expect(formatScore('<think>x</think><answer> </answer>')).toBe(0); // empty answer
    expect(formatScore('<think>x</think><answer>42')).toBe(0); // cut off
  });
});
