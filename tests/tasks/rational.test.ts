import { describe, expect, it } from 'vitest';
import { isGrpoError } from '../../src/shared/errors.js';
import { Rational } from '../../src/tasks/rational.js';

describe('Rational', () => {
  it('keeps lowest terms with the sign on the numerator', () => {
    expect(Rational.of(6, -8).toString()).toBe('-3/4');
    expect(Rational.of(-4, -2).toString()).toBe('2');
    expect(Rational.of(0, -5).toString()).toBe('0');
  });

  it('does exact arithmetic', () => {
    const a = Rational.of(1, 3);
    const b = Rational.of(-1, 6);
    expect(a.add(b).toString()).toBe('1/6');
    expect(a.sub(b).toString()).toBe('1/2');
    expect(a.mul(b).toString()).toBe('-1/18');
    expect(a.div(b).toString()).toBe('-2');
    expect(Rational.of(2).sub(Rational.of(4)).div(Rational.of(-6)).toString()).toBe('1/3');
  });

  it('refuses division by zero with a coded error', () => {
    expect(() => Rational.of(1).div(Rational.ZERO)).toThrow(expect.objectContaining({ code: 'GRPO_ERR_DIVISION_BY_ZERO' }));
    try {
      Rational.of(1, 0);
      expect.unreachable();
    } catch (err) {
      expect(isGrpoError(err, 'GRPO_ERR_DIVISION_BY_ZERO')).toBe(true);
    }
  });

  it('parses integers and fractions, reducing them, and rejects anything else', () => {
    expect(Rational.parse('-12')?.toString()).toBe('-12');
    expect(Rational.parse('2/4')?.toString()).toBe('1/2');
    expect(Rational.parse('-6/8')?.toString()).toBe('-3/4');
    for (const bad of ['', '-', '+3', '1/0', '1/-2', '1.5', ' 3', '3 ', '1//2', '--1', '1/2/3']) {
      expect(Rational.parse(bad), bad).toBeNull();
    }
  });

  it('compares and converts', () => {
    expect(Rational.parse('2/4')!.equals(Rational.of(1, 2))).toBe(true);
    expect(Rational.of(-7, 2).abs().toString()).toBe('7/2');
    expect(Rational.of(-7, 2).toNumber()).toBe(-3.5);
    expect(Rational.of(5).isInteger()).toBe(true);
  });
});
