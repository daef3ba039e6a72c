import type { PreviewRow } from "../../../api/types";

/** The row as the model sees it, with the tokens the loss is computed on highlighted. */
export function RenderedRow({ row }: { row: PreviewRow }) {
  if (row.segments?.length) {
    return (
      <div className="token-view" aria-label={`Rendered row ${row.line}`}>
        {row.segments.map((segment, i) =>
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
  return <div className="token-view">{row.rendered ?? JSON.stringify(row.row, null, 2)}</div>;
}
