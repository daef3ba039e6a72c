import { useState, type FormEvent } from "react";
import { fieldError } from "../../../api/client";
import { useGiveFeedback } from "../../../api/give-feedback";
import { Button } from "../../../components/Button";
import { Field } from "../../../components/Field";
import { InlineError } from "../../../components/States";

/**
 * Thumbs up or down on one answer, and "Edit" to write what it should have said (a correction:
 * preference data with the correction chosen over the answer). The answer is named by the
 * completion id the API returned for it.
 */
export function AnswerFeedback({ completionId, answer }: { completionId: string; answer: string }) {
  const give = useGiveFeedback();
  const [rating, setRating] = useState<"up" | "down" | null>(null);
  const [editing, setEditing] = useState(false);
  const [correction, setCorrection] = useState(answer);
  const [corrected, setCorrected] = useState(false);

  const rate = (value: "up" | "down") =>
    give.mutate({ completion: completionId, rating: value }, { onSuccess: () => setRating(value) });
  const saveCorrection = (event: FormEvent) => {
    event.preventDefault();
    give.mutate({ completion: completionId, correction }, { onSuccess: () => { setCorrected(true); setEditing(false); } });
  };

  return (
    <div className="stack-sm" style={{ marginTop: 4 }}>
      <div className="row" role="group" aria-label="Feedback on this answer">
        <Button size="sm" variant="ghost" aria-pressed={rating === "up"} aria-label="Good answer" onClick={() => rate("up")} disabled={give.isPending}>
          👍
        </Button>
        <Button size="sm" variant="ghost" aria-pressed={rating === "down"} aria-label="Bad answer" onClick={() => rate("down")} disabled={give.isPending}>
          👎
        </Button>
        <Button size="sm" variant="ghost" onClick={() => setEditing((open) => !open)} aria-expanded={editing}>
          Edit
        </Button>
        {corrected ? <span className="small muted" role="status">Correction saved.</span> : null}
      </div>
      {editing ? (
        <form className="stack-sm" onSubmit={saveCorrection} aria-label="Correct this answer">
          <Field label="What it should have said" errors={fieldError(give.error, "correction")}>
            <textarea className="textarea" rows={3} value={correction} onChange={(e) => setCorrection(e.target.value)} />
          </Field>
          <div className="row">
            <Button type="submit" size="sm" variant="primary" busy={give.isPending} disabled={!correction.trim() || correction.trim() === answer.trim()}>
              Save correction
            </Button>
          </div>
        </form>
      ) : null}
      {give.isError && !fieldError(give.error, "correction") ? <InlineError error={give.error} /> : null}
    </div>
  );
}
