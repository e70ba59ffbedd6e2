/** Strict number parsing for option values: "12abc" or "1.5" for an integer is a usage error, not 12. */
import { UsageError } from '../errors.js';

export function integerOption(name: string, min = 0) {
  return (value: string): number => {
    if (!/^-?\d+$/.test(value.trim())) throw new UsageError(`${name} must be an integer (got '${value}')`);
    const n = Number(value);
    if (n < min) throw new UsageError(`${name} must be at least ${min} (got ${n})`);
    return n;
  };
}

export function floatOption(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n)) throw new UsageError(`${name} must be a number (got '${value}')`);
    return n;
  };
}
