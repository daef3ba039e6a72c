import { Link } from "react-router";
import { Card } from "../components/Card";
import { EmptyState } from "../components/States";

export function NotFoundPage() {
  return (
    <Card>
      <EmptyState title="Page not found" action={<Link to="/projects">Back to projects</Link>}>
        The address does not match any page of the dashboard.
      </EmptyState>
    </Card>
  );
}
