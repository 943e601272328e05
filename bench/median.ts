/**
 * The median of `values`: the middle one, or the mean of the two middle ones for an even count; NaN
 * when there are none. The benchmarks' rounds report it (one slow or fast spell of the machine moves a
 * mean, not a median).
 */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  if (sorted.length === 0) return NaN;
  return sorted.length % 2 === 1 ? (sorted[middle] as number) : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}
