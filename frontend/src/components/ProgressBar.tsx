export function ProgressBar({ value, label }: { value: number | null | undefined; label: string }) {
  const fraction = Math.max(0, Math.min(1, value ?? 0));
  const percent = Math.round(fraction * 100);
  return (
    <div
      className="progress"
      role="progressbar"
      aria-label={label}
      aria-valuemin={0}
      aria-valuemax={100}
      aria-valuenow={percent}
      aria-valuetext={`${percent}%`}
    >
      <div className="progress-bar" style={{ width: `${percent}%` }} />
    </div>
  );
}
