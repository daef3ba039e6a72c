import type { PreviewRow, PreviewSegment } from "../../../api/types";

function Segments({ segments, label }: { segments: PreviewSegment[]; label: string }) {
  return (
    <div className="token-view" aria-label={label}>
      {segments.map((segment, i) =>
        segment.trained ? (
          <mark key={i} className="trained" title="Trained on">
            {segment.text}
          </mark>
        ) : (
          <span key={i}>{segment.text}</span>
        ),
      )}
    </div>
  );
}

/** The row as the model sees it, with the tokens the loss is computed on highlighted; a
 * preference pair shows its chosen and rejected answers side by side. */
export function RenderedRow({ row }: { row: PreviewRow }) {
  if (row.segments?.length && row.rejected_segments?.length) {
    return (
      <div className="pair-view" style={{ display: "grid", gridTemplateColumns: "1fr 1fr", gap: "0.5rem" }}>
        <div>
          <strong>Chosen</strong>
          <Segments segments={row.segments} label={`Chosen answer of row ${row.line}`} />
        </div>
        <div>
          <strong>Rejected</strong>
          <Segments segments={row.rejected_segments} label={`Rejected answer of row ${row.line}`} />
        </div>
      </div>
    );
  }
  if (row.segments?.length) {
    return <Segments segments={row.segments} label={`Rendered row ${row.line}`} />;
  }
  return <div className="token-view">{row.rendered ?? JSON.stringify(row.row, null, 2)}</div>;
}
