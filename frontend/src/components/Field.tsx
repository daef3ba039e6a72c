import { cloneElement, isValidElement, useId, type ReactElement, type ReactNode } from "react";

export interface FieldProps {
  label: ReactNode;
  /** Reasons the API gave for this field; shown under the control. */
  errors?: string[] | undefined;
  help?: ReactNode;
  /** A single form control (input, select, textarea); it gets id, aria-describedby and aria-invalid. */
  children: ReactElement<Record<string, unknown>>;
  className?: string;
}

export function Field({ label, errors, help, children, className }: FieldProps) {
  const id = useId();
  const helpId = `${id}-help`;
  const errorId = `${id}-error`;
  const describedBy = [help ? helpId : null, errors?.length ? errorId : null].filter(Boolean).join(" ") || undefined;
  const control = isValidElement(children)
    ? cloneElement(children, {
        id: (children.props.id as string | undefined) ?? id,
        "aria-describedby": describedBy,
        "aria-invalid": errors?.length ? true : undefined,
      })
    : children;
  const controlId = (children.props.id as string | undefined) ?? id;
  return (
    <div className={`field ${className ?? ""}`}>
      <label htmlFor={controlId}>{label}</label>
      {control}
      {help ? (
        <span id={helpId} className="field-help">
          {help}
        </span>
      ) : null}
      {errors?.length ? (
        <ul id={errorId} className="field-error" role="alert">
          {errors.map((reason) => (
            <li key={reason}>{reason}</li>
          ))}
        </ul>
      ) : null}
    </div>
  );
}
