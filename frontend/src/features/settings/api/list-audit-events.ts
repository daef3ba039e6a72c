import { keepPreviousData, queryOptions, useQuery } from "@tanstack/react-query";
import { apiFetch, type Page } from "../../../api/client";
import type { AuditEvent } from "../../../api/types";

export interface AuditFilters {
  teamId: number;
  action?: string;
  page: number;
}

export const auditEventsKey = (filters: AuditFilters) => ["audit-events", filters] as const;

export function listAuditEvents({ teamId, action, page }: AuditFilters): Promise<Page<AuditEvent>> {
  return apiFetch<Page<AuditEvent>>("/api/v1/audit-events/", { query: { team: teamId, action, page, page_size: 50 } });
}

export const auditEventsQueryOptions = (filters: AuditFilters) =>
  queryOptions({ queryKey: auditEventsKey(filters), queryFn: () => listAuditEvents(filters), placeholderData: keepPreviousData });

export function useAuditEvents(filters: AuditFilters) {
  return useQuery(auditEventsQueryOptions(filters));
}
