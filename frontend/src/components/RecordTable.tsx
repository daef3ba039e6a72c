import { useState, type ReactNode } from "react";
import type { UseMutationResult, UseQueryResult } from "@tanstack/react-query";
import { resultsOf, type Page } from "../api/client";
import { Button } from "./Button";
import { EmptyState, InlineError, QueryState } from "./States";

export interface Column<T> {
  header: string;
  cell: (row: T) => ReactNode;
  /** Class of both the header and the cells, e.g. "num" or "nowrap". */
  className?: string;
}

/** The one destructive action of a row (delete, remove, revoke). */
export interface RowRemoval<T, V> {
  mutation: UseMutationResult<unknown, unknown, V>;
  variables: (row: T) => V;
  label: string;
  /** The button's accessible name where its label alone does not say which row, e.g. "✕". */
  ariaLabel?: (row: T) => string;
  /** Asked before acting; without it the action runs at once. */
  confirm?: (row: T) => string;
  /** Rows that offer the action (the user's role, the row's state); all by default. */
  allowed?: (row: T) => boolean;
  variant?: "danger" | "ghost";
}

/**
 * A list query as a table whose last column holds each row's actions and its one destructive
 * action, with the loading, empty and error states of the query and the inline error of any
 * mutation made from the rows (`errors`, the removal's own included), so a failed delete is
 * never silent. It sits flush in a card (`<Card bodyClassName="">`), as tables do.
 */
export function RecordTable<T extends { id: number }, V>({
  query,
  columns,
  empty,
  actions,
  remove,
  errors = [],
  label,
}: {
  query: UseQueryResult<Page<T> | T[]>;
  columns: Column<T>[];
  empty: ReactNode | string;
  /** Other per-row controls, shown before the removal button. */
  actions?: (row: T) => ReactNode;
  remove?: RowRemoval<T, V>;
  /** Errors of other mutations made from the rows, e.g. a role change. */
  errors?: unknown[];
  label?: string;
}) {
  // Which row's removal is under way, so only that row's button spins.
  const [removing, setRemoving] = useState<number | null>(null);
  const error = [...errors, remove?.mutation.error].find(Boolean);
  const onRemove = (row: T) => {
    if (!remove) return;
    if (remove.confirm && !window.confirm(remove.confirm(row))) return;
    setRemoving(row.id);
    remove.mutation.mutate(remove.variables(row));
  };
  return (
    <>
      <QueryState
        query={query}
        isEmpty={(d) => resultsOf(d).length === 0}
        empty={typeof empty === "string" ? <EmptyState title={empty} /> : empty}
      >
        {(data) => (
          <div className="table-wrap">
            <table className="table" aria-label={label}>
              <thead>
                <tr>
                  {columns.map((c) => (
                    <th key={c.header} className={c.className}>
                      {c.header}
                    </th>
                  ))}
                  {actions || remove ? (
                    <th>
                      <span className="visually-hidden">Actions</span>
                    </th>
                  ) : null}
                </tr>
              </thead>
              <tbody>
                {resultsOf(data).map((row) => (
                  <tr key={row.id}>
                    {columns.map((c) => (
                      <td key={c.header} className={c.className}>
                        {c.cell(row)}
                      </td>
                    ))}
                    {actions || remove ? (
                      <td className="nowrap">
                        {actions?.(row)}
                        {actions && remove ? " " : null}
                        {remove && (remove.allowed?.(row) ?? true) ? (
                          <Button
                            size="sm"
                            variant={remove.variant ?? "danger"}
                            aria-label={remove.ariaLabel?.(row)}
                            busy={remove.mutation.isPending && removing === row.id}
                            onClick={() => onRemove(row)}
                          >
                            {remove.label}
                          </Button>
                        ) : null}
                      </td>
                    ) : null}
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </QueryState>
      {error ? (
        <div className="card-body">
          <InlineError error={error} />
        </div>
      ) : null}
    </>
  );
}
