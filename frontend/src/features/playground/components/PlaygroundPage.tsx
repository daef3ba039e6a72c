import { useMutation } from "@tanstack/react-query";
import { useEffect, useRef, useState, type FormEvent, type KeyboardEvent } from "react";
import { Link, useSearchParams } from "react-router";
import { resultsOf } from "../../../api/client";
import type { ChatMessage } from "../../../api/types";
import { Button } from "../../../components/Button";
import { Card, PageHeader } from "../../../components/Card";
import { CopyButton } from "../../../components/CopyButton";
import { Field } from "../../../components/Field";
import { EmptyState, InlineError, LoadingState } from "../../../components/States";
import { useDeployments } from "../../../api/list-deployments";
import { conversationSnippet, inferenceBaseUrl } from "../../../lib/inference-snippets";
import { useCurrentTeam } from "../../../lib/current-team";
import { streamChat } from "../api/stream-chat";
import { SaveToEvalSet } from "./SaveToEvalSet";
import { AnswerFeedback } from "./AnswerFeedback";
import { CompareAnswers } from "./CompareAnswers";
import { FeedbackToDataset } from "./FeedbackToDataset";

export function PlaygroundPage() {
  const { team } = useCurrentTeam();
  const deployments = useDeployments({ teamId: team.id });
  const ready = resultsOf(deployments.data).filter((d) => d.status === "ready");
  const [params, setParams] = useSearchParams();
  const chosen = ready.find((d) => String(d.id) === params.get("deployment")) ?? ready[0];
  const [system, setSystem] = useState("You are a helpful assistant.");
  const [temperature, setTemperature] = useState(0.7);
  const [maxTokens, setMaxTokens] = useState(256);
  const [turns, setTurns] = useState<ChatMessage[]>([]);
  // The completion id of each answer, by its index in turns: what feedback names it by.
  const [answerIds, setAnswerIds] = useState<Record<number, string>>({});
  const [mode, setMode] = useState<"chat" | "compare">("chat");
  const [draft, setDraft] = useState("");
  const abortRef = useRef<AbortController | null>(null);
  const chatRef = useRef<HTMLDivElement>(null);

  const chat = useMutation({
    mutationFn: async (history: ChatMessage[]) => {
      abortRef.current = new AbortController();
      const messages = system.trim() ? [{ role: "system" as const, content: system }, ...history] : history;
      const id = await streamChat(
        { deploymentId: chosen!.id, messages, temperature, max_tokens: maxTokens },
        (text) =>
          setTurns((current) => {
            const last = current[current.length - 1];
            if (!last || last.role !== "assistant") return current;
            return [...current.slice(0, -1), { ...last, content: last.content + text }];
          }),
        abortRef.current.signal,
      );
      if (id) setAnswerIds((current) => ({ ...current, [history.length]: id }));
    },
    // A reply that failed or was stopped before its first token leaves no empty bubble behind;
    // the reason shows under the conversation.
    onError: () => setTurns((current) => (current.at(-1)?.role === "assistant" && !current.at(-1)?.content ? current.slice(0, -1) : current)),
  });

  useEffect(() => {
    // Follow the reply as it streams in.
    chatRef.current?.scrollTo({ top: chatRef.current.scrollHeight });
  }, [turns]);

  const send = (event?: FormEvent) => {
    event?.preventDefault();
    if (!draft.trim() || !chosen || chat.isPending) return;
    const history: ChatMessage[] = [...turns, { role: "user", content: draft.trim() }];
    setTurns([...history, { role: "assistant", content: "" }]);
    setDraft("");
    chat.mutate(history);
  };
  const stop = () => abortRef.current?.abort();
  const onKeyDown = (event: KeyboardEvent<HTMLTextAreaElement>) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      send();
    }
  };
  const stopped = chat.error instanceof DOMException && chat.error.name === "AbortError";
  const conversation = system.trim() ? [{ role: "system" as const, content: system }, ...turns] : turns;

  if (deployments.isPending) return <LoadingState label="Loading deployments…" />;
  return (
    <>
      <PageHeader title="Playground" description="Chat with a deployed model; tokens stream in as they are generated." />
      {deployments.isError ? <InlineError error={deployments.error} /> : null}
      {ready.length === 0 ? (
        <Card>
          <EmptyState title="No ready deployment" action={<Link to="/projects">Go to a project's Services to deploy a run</Link>}>
            The Playground talks to deployed models.
          </EmptyState>
        </Card>
      ) : (
        <div style={{ display: "grid", gridTemplateColumns: "300px 1fr", gap: 16, alignItems: "start" }}>
          <Card title="Settings">
            <div className="stack">
              <Field label="Deployment">
                <select className="select" value={chosen?.id ?? ""} onChange={(e) => setParams({ deployment: e.target.value })}>
                  {ready.map((d) => (
                    <option key={d.id} value={d.id}>
                      {d.name}
                    </option>
                  ))}
                </select>
              </Field>
              <Field label="System prompt">
                <textarea className="textarea" value={system} onChange={(e) => setSystem(e.target.value)} rows={4} />
              </Field>
              <Field label={`Temperature: ${temperature.toFixed(2)}`} help="0 is greedy and repeatable; higher is more varied.">
                <input type="range" min={0} max={2} step={0.05} value={temperature} onChange={(e) => setTemperature(Number(e.target.value))} />
              </Field>
              <Field label="Max tokens">
                <input className="input" type="number" min={1} max={4096} value={maxTokens} onChange={(e) => setMaxTokens(Number(e.target.value))} />
              </Field>
              <div className="row">
                <CopyButton
                  size="md"
                  label="Copy as code"
                  text={conversationSnippet(inferenceBaseUrl(), chosen?.name ?? "model", conversation.filter((t) => t.content), temperature, maxTokens)}
                />
                <Button onClick={() => { setTurns([]); setAnswerIds({}); }} disabled={chat.isPending || turns.length === 0}>
                  Clear
                </Button>
                {chosen ? <SaveToEvalSet projectId={chosen.project} deploymentId={chosen.id} conversation={conversation} disabled={chat.isPending} /> : null}
              </div>
              {chosen ? (
                <details>
                  <summary>Feedback to data</summary>
                  <FeedbackToDataset projectId={chosen.project} deploymentId={chosen.id} />
                </details>
              ) : null}
            </div>
          </Card>
          <div className="stack">
            <div className="row" role="group" aria-label="Mode">
              <Button size="sm" aria-pressed={mode === "chat"} onClick={() => setMode("chat")}>Chat</Button>
              <Button size="sm" aria-pressed={mode === "compare"} onClick={() => setMode("compare")}>Compare</Button>
            </div>
            {mode === "compare" ? (
              <Card>
                <CompareAnswers deployments={ready} system={system} temperature={temperature} maxTokens={maxTokens} />
              </Card>
            ) : (
              <Card bodyClassName="">
                <div className="chat" ref={chatRef} role="log" aria-live="polite" aria-label="Conversation">
                  {turns.length === 0 ? <EmptyState title={`Say something to ${chosen?.name}`}>Enter sends; Shift+Enter adds a line.</EmptyState> : null}
                  {turns.map((turn, i) => (
                    <div key={i} className={`chat-message ${turn.role}`}>
                      <div className="chat-role">{turn.role === "user" ? "You" : chosen?.name}</div>
                      {turn.content ? (
                        <div className="chat-text">{turn.content}</div>
                      ) : chat.isPending && i === turns.length - 1 ? (
                        <span className="spinner" aria-label="Generating" />
                      ) : turn.role === "assistant" ? (
                        <div className="chat-text muted">(no text: the model ended its answer at once)</div>
                      ) : null}
                      {turn.role === "assistant" && answerIds[i] && !(chat.isPending && i === turns.length - 1) ? (
                        <AnswerFeedback completionId={answerIds[i]} answer={turn.content} />
                      ) : null}
                    </div>
                  ))}
                </div>
                <form className="card-body stack-sm" onSubmit={send} style={{ borderTop: "1px solid var(--border)" }}>
                  {chat.isError && !stopped ? <InlineError error={chat.error} /> : null}
                  {stopped ? <div className="small muted">Stopped.</div> : null}
                  <div className="row" style={{ alignItems: "flex-end" }}>
                    <div className="field" style={{ flex: 1 }}>
                      <label htmlFor="chat-message" className="visually-hidden">
                        Message
                      </label>
                      <textarea id="chat-message" className="textarea" rows={2} placeholder="Message" value={draft} onChange={(e) => setDraft(e.target.value)} onKeyDown={onKeyDown} />
                    </div>
                    {chat.isPending ? (
                      <Button variant="danger" onClick={stop}>
                        Stop
                      </Button>
                    ) : (
                      <Button type="submit" variant="primary" disabled={!draft.trim()}>
                        Send
                      </Button>
                    )}
                  </div>
                </form>
              </Card>
            )}
          </div>
        </div>
      )}
    </>
  );
}
