import { useState, type FormEvent } from "react";
import { errorBesideButton, fieldError } from "../../../api/client";
import type { Membership, Role } from "../../../api/types";
import { Button } from "../../../components/Button";
import { Card } from "../../../components/Card";
import { Field } from "../../../components/Field";
import { RecordTable, type Column } from "../../../components/RecordTable";
import { InlineError } from "../../../components/States";
import { formatDateTime } from "../../../lib/format";
import { useCurrentTeam } from "../../../lib/current-team";
import { useAddMember } from "../api/add-member";
import { useMembers } from "../api/list-members";
import { useRemoveMember, useUpdateMemberRole } from "../api/update-member";

const ROLES: { value: Role; help: string }[] = [
  { value: "owner", help: "everything, including deleting the team" },
  { value: "admin", help: "manage members and everything in projects" },
  { value: "member", help: "create datasets, runs and deployments" },
  { value: "viewer", help: "read only" },
];

function AddMemberForm() {
  const { team } = useCurrentTeam();
  const add = useAddMember();
  const [username, setUsername] = useState("");
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [role, setRole] = useState<Role>("member");
  const submit = (event: FormEvent) => {
    event.preventDefault();
    add.mutate(
      { team: team.id, username: username.trim(), email: email.trim(), password, role },
      { onSuccess: () => { setUsername(""); setEmail(""); setPassword(""); } },
    );
  };
  return (
    <form className="stack" onSubmit={submit} noValidate aria-label="Add member">
      <div className="form-grid">
        <Field label="Username" errors={fieldError(add.error, "username")}>
          <input className="input" value={username} onChange={(e) => setUsername(e.target.value)} autoComplete="off" />
        </Field>
        <Field label="E-mail" errors={fieldError(add.error, "email")}>
          <input className="input" type="email" value={email} onChange={(e) => setEmail(e.target.value)} autoComplete="off" />
        </Field>
        <Field label="Initial password" errors={fieldError(add.error, "password")} help="For a new account; leave empty to add an existing user.">
          <input className="input" type="password" value={password} onChange={(e) => setPassword(e.target.value)} autoComplete="new-password" />
        </Field>
        <Field label="Role" errors={fieldError(add.error, "role")}>
          <select className="select" value={role} onChange={(e) => setRole(e.target.value as Role)}>
            {ROLES.map((r) => (
              <option key={r.value} value={r.value}>
                {r.value} — {r.help}
              </option>
            ))}
          </select>
        </Field>
      </div>
      <InlineError error={errorBesideButton(add.error, ["username", "email", "password", "role"])} />
      {add.isSuccess ? <div className="alert alert-success" role="status">Added {add.data.user.username} as {add.data.role}.</div> : null}
      <div className="form-actions">
        <Button type="submit" variant="primary" busy={add.isPending} disabled={!username.trim()}>
          Add member
        </Button>
      </div>
    </form>
  );
}

export function MembersPanel() {
  const { team, canManage } = useCurrentTeam();
  const members = useMembers(team.id);
  const update = useUpdateMemberRole();
  const remove = useRemoveMember();
  const columns: Column<Membership>[] = [
    { header: "User", cell: (m) => m.user.username },
    { header: "E-mail", cell: (m) => m.user.email || "—" },
    {
      header: "Role",
      cell: (m) =>
        canManage ? (
          <select
            className="select"
            style={{ width: "auto" }}
            aria-label={`Role of ${m.user.username}`}
            value={m.role}
            disabled={update.isPending}
            onChange={(e) => update.mutate({ teamId: team.id, membershipId: m.id, role: e.target.value as Role })}
          >
            {ROLES.map((r) => (
              <option key={r.value} value={r.value}>
                {r.value}
              </option>
            ))}
          </select>
        ) : (
          m.role
        ),
    },
    { header: "Since", className: "nowrap", cell: (m) => formatDateTime(m.created_at) },
  ];
  return (
    <div className="stack">
      {canManage ? (
        <Card title="Add a member">
          <AddMemberForm />
        </Card>
      ) : null}
      <Card title={`Members of ${team.name}`} bodyClassName="">
        <RecordTable
          query={members}
          columns={columns}
          empty="No members"
          errors={[update.error]}
          remove={{
            mutation: remove,
            variables: (m) => ({ teamId: team.id, membershipId: m.id }),
            label: "Remove",
            confirm: (m) => `Remove ${m.user.username} from ${team.name}?`,
            allowed: () => canManage,
          }}
        />
      </Card>
    </div>
  );
}
