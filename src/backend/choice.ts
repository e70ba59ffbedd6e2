/** Backend names, kept apart from index.ts so that parsing options does not load TensorFlow.js. */
import { UsageError } from '../errors.js';

export const BACKEND_CHOICES = ['auto', 'tensorflow', 'wasm', 'cpu'] as const;
export type BackendChoice = (typeof BACKEND_CHOICES)[number];
export type BackendName = Exclude<BackendChoice, 'auto'>;

export function parseBackendChoice(value: string): BackendChoice {
  if ((BACKEND_CHOICES as readonly string[]).includes(value)) return value as BackendChoice;
  throw new UsageError(`unknown backend '${value}'`, { hint: `use one of ${BACKEND_CHOICES.join(', ')}` });
}
