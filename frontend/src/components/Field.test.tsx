import { render, screen } from "@testing-library/react";
import { Field } from "./Field";

describe("Field", () => {
  it("labels its control and announces the API's reasons beside it", () => {
    render(
      <Field label="Name" help="Unique within the team" errors={["Already taken."]}>
        <input className="input" />
      </Field>,
    );
    const input = screen.getByLabelText("Name");
    expect(input).toHaveAttribute("aria-invalid", "true");
    expect(input).toHaveAccessibleDescription(/Unique within the team.*Already taken\./);
    expect(screen.getByRole("alert")).toHaveTextContent("Already taken.");
  });

  it("marks nothing invalid without errors", () => {
    render(
      <Field label="Name">
        <input className="input" />
      </Field>,
    );
    expect(screen.getByLabelText("Name")).not.toHaveAttribute("aria-invalid");
    expect(screen.queryByRole("alert")).toBeNull();
  });
});
