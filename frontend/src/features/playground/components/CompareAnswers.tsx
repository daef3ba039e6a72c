import { useRef, useState, type FormEvent } from "react";
import type { ChatMessage, Deployment } from "../../../api/types";
import { useGiveFeedback } from "../../../api/give-feedback";
import { Button } from "../../../components/Button";
import { Field } from "../../../components/Field";
import { InlineError } from "../../../components/States";
import { streamChat } from "../api/stream-chat";
import { AnswerFeedback } from "./AnswerFeedback";

interface Side {
  text: string;
  id: string | null;
}

const EMPTY: Side = { text: "", id: null };

/**
 * Compare mode: one prompt, two answers side by side (two deployments, or two samples of one),
 * and the user picks the better one or a tie. Each pick is a choice between the two completion
 * ids: a preference pair for DPO once turned into a dataset version.
 */
export function CompareAnswers({ deployments, system, temperature, maxTokens }: {
  deployments: Deployment[];
  system: string;
  temperature: number;
  maxTokens: number;
}) {
  const [leftId, setLeftId] = useState(deployments[0]?.id);
  const [rightId, setRightId] = useState((deployments[1] ?? deployments[0])?.id);
  const [prompt, setPrompt] = useState("");
  const [asked, setAsked] = useState("");
  const [sides, setSides] = useState<[Side, Side]>([EMPTY, EMPTY]);
  const [running, setRunning] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [picked, setPicked] = useState<string | null>(null);
  const [judged, setJudged] = useState(0);
  const abortRef = useRef<AbortController | null>(null);
  const give = useGiveFeedback();
  const name = (id: number | undefined) => deployments.find((d) => d.id === id)?.name ?? "";

  const ask = async (event: FormEvent) => {
    event.preventDefault();
    if (!prompt.trim() || leftId === undefined || rightId === undefined) return;
    const messages: ChatMessage[] = [...(system.trim() ? [{ role: "system" as const, content: system }] : []), { role: "user", content: prompt.trim() }];
    abortRef.current = new AbortController();
    setAsked(prompt.trim());
    setSides([EMPTY, EMPTY]);
    setPicked(null);
    setError(null);
    setRunning(true);
    const answer = (index: 0 | 1, deploymentId: number) =>
      streamChat(
        { deploymentId, messages, temperature, max_tokens: maxTokens },
        (text) => setSides((current) => (index === 0 ? [{ ...current[0], text: current[0].text + text }, current[1]] : [current[0], { ...current[1], text: current[1].text + text }])),
        abortRef.current!.signal,
      ).then((id) => setSides((current) => (index === 0 ? [{ ...current[0], id }, current[1]] : [current[0], { ...current[1], id }])));
    try {
      await Promise.all([answer(0, leftId), answer(1, rightId)]);
    } catch (caught) {
      setError(caught);
    } finally {
      setRunning(false);
    }
  };

  const pick = (preferred: "left" | "right" | "tie") => {
    const [left, right] = sides;
    if (!left.id || !right.id) return;
    const winner = preferred === "tie" ? "tie" : preferred === "left" ? left.id : right.id;
    give.mutate({ completion: left.id, compared_with: right.id, preferred: winner }, {
      onSuccess: () => {
        setPicked(preferred);
        setJudged((count) => count + 1);
        setPrompt("");
      },
    });
  };

  const bothDone = !running && sides[0].id !== null && sides[1].id !== null;
  return (
    <div className="stack">
      <form className="stack-sm" onSubmit={ask} aria-label="Compare two answers">
        {/* The same two columns as the answers below, so each select stands over its answer. */}
        <div style={{ display: "grid", gridTemplateColumns: "1fr 1fr", gap: 12, alignItems: "start" }}>
          <Field label="Left">
            <select className="select" value={leftId ?? ""} onChange={(e) => setLeftId(Number(e.target.value))}>
              {deployments.map((d) => <option key={d.id} value={d.id}>{d.name}</option>)}
            </select>
          </Field>
          <Field label="Right" help="The same deployment on both sides compares two samples of it.">
            <select className="select" value={rightId ?? ""} onChange={(e) => setRightId(Number(e.target.value))}>
              {deployments.map((d) => <option key={d.id} value={d.id}>{d.name}</option>)}
            </select>
          </Field>
        </div>
        <Field label="Prompt">
          <textarea className="textarea" rows={2} value={prompt} onChange={(e) => setPrompt(e.target.value)} />
        </Field>
        <div className="row">
          {running ? (
            <Button variant="danger" onClick={() => abortRef.current?.abort()}>Stop</Button>
          ) : (
            <Button type="submit" variant="primary" disabled={!prompt.trim()}>Ask both</Button>
          )}
          <span className="small muted" role="status">{judged} compared so far</span>
        </div>
      </form>
      {error && !(error instanceof DOMException && error.name === "AbortError") ? <InlineError error={error} /> : null}
      {asked ? (
        <>
          <div className="small muted">{asked}</div>
          <div style={{ display: "grid", gridTemplateColumns: "1fr 1fr", gap: 12 }}>
            {sides.map((side, index) => (
              <section key={index} className={`chat-message assistant${picked === (index === 0 ? "left" : "right") ? " picked" : ""}`}
                aria-label={`${index === 0 ? "Left" : "Right"} answer`}>
                <div className="chat-role">{index === 0 ? "Left" : "Right"}: {name(index === 0 ? leftId : rightId)}</div>
                <div className="chat-text">{side.text || (running ? <span className="spinner" aria-label="Generating" /> : "(no text)")}</div>
                {side.id && !running ? <AnswerFeedback completionId={side.id} answer={side.text} /> : null}
              </section>
            ))}
          </div>
          <div className="row" role="group" aria-label="Which answer is better">
            <Button onClick={() => pick("left")} disabled={!bothDone || give.isPending} aria-pressed={picked === "left"}>Left is better</Button>
            <Button onClick={() => pick("tie")} disabled={!bothDone || give.isPending} aria-pressed={picked === "tie"}>Tie</Button>
            <Button onClick={() => pick("right")} disabled={!bothDone || give.isPending} aria-pressed={picked === "right"}>Right is better</Button>
          </div>
          {give.isError ? <InlineError error={give.error} /> : null}
        </>
      ) : null}
    </div>
  );
}
