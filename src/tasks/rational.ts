/**
 * Exact rational numbers on BigInt, always in lowest terms with a positive denominator, so two
 * equal values have one text form: "7", "-1/3". Used for the arithmetic task's answers, where
 * floating point would make "exact answer" a matter of rounding.
 */
import { GrpoError } from '../shared/errors.js';

const NUMBER_TEXT = /^(-?)(\d+)(?:\/(\d+))?$/;

function abs(x: bigint): bigint {
  return x < 0n ? -x : x;
}

function gcd(a: bigint, b: bigint): bigint {
  a = abs(a);
  b = abs(b);
  while (b !== 0n) [a, b] = [b, a % b];
  return a;
}

export class Rational {
  private constructor(
    readonly num: bigint,
    readonly den: bigint, // > 0, coprime with num
  ) {}

  static readonly ZERO = new Rational(0n, 1n);

  /** num/den reduced; den must not be zero. */
  static of(num: bigint | number, den: bigint | number = 1n): Rational {
    let n = BigInt(num);
    let d = BigInt(den);
    if (d === 0n) throw new GrpoError('GRPO_ERR_DIVISION_BY_ZERO', `rational ${n}/0 has a zero denominator`);
    if (d < 0n) {
      n = -n;
      d = -d;
    }
    const g = gcd(n, d);
    return g > 1n ? new Rational(n / g, d / g) : new Rational(n, d);
  }

  /**
   * Reads "-12", "3/4", "-6/8" (reduced on reading, so "2/4" equals "1/2"); null for anything
   * else, including a zero denominator, "+3", spaces and decimals.
   */
  static parse(text: string): Rational | null {
    const m = NUMBER_TEXT.exec(text);
    if (!m) return null;
    const den = m[3] === undefined ? 1n : BigInt(m[3]);
    if (den === 0n) return null;
    const num = BigInt(m[2]);
    return Rational.of(m[1] === '-' ? -num : num, den);
  }

  add(o: Rational): Rational {
    return Rational.of(this.num * o.den + o.num * this.den, this.den * o.den);
  }

  sub(o: Rational): Rational {
    return Rational.of(this.num * o.den - o.num * this.den, this.den * o.den);
  }

  mul(o: Rational): Rational {
    return Rational.of(this.num * o.num, this.den * o.den);
  }

  /** Throws GRPO_ERR_DIVISION_BY_ZERO when `o` is zero. */
  div(o: Rational): Rational {
    if (o.num === 0n) throw new GrpoError('GRPO_ERR_DIVISION_BY_ZERO', `cannot divide ${this} by zero`);
    return Rational.of(this.num * o.den, this.den * o.num);
  }

  abs(): Rational {
    return this.num < 0n ? new Rational(-this.num, this.den) : this;
  }

  isZero(): boolean {
    return this.num === 0n;
  }

  isInteger(): boolean {
    return this.den === 1n;
  }

  equals(o: Rational): boolean {
    return this.num === o.num && this.den === o.den;
  }

  /** Nearest double; exact for the small values the task produces. */
  toNumber(): number {
    return Number(this.num) / Number(this.den);
  }

  /** The canonical text: "n" for integers, else "n/d" with the sign on the numerator. */
  toString(): string {
    return this.den === 1n ? `${this.num}` : `${this.num}/${this.den}`;
  }
}
