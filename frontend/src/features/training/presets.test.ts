import type { Hyperparameter } from "../../api/types";
import { formatConfigValue, hyperparameterLabel, isLoraOnly, parseConfigValue } from "./presets";

const field = (name: string, type: Hyperparameter["type"], nullable = false): Hyperparameter => ({ name, type, nullable, default: null, choices: [], help: "" });

describe("the new-run form's hyperparameters", () => {
  it("turns the form's text into the API's values by the engine's field type", () => {
    expect(parseConfigValue(field("batch_size", "int"), "16")).toBe(16);
    expect(parseConfigValue(field("learning_rate", "float", true), "3e-4")).toBe(0.0003);
    expect(parseConfigValue(field("train_on_prompt", "bool"), "true")).toBe(true);
    expect(parseConfigValue(field("lora_target_modules", "list", true), "q_proj, v_proj,")).toEqual(["q_proj", "v_proj"]);
    expect(parseConfigValue(field("lr_schedule", "choice"), "linear")).toBe("linear");
  });

  it("sends empty nullable fields as null and unreadable numbers as text, for the API to name", () => {
    expect(parseConfigValue(field("max_steps", "int", true), "  ")).toBeNull();
    expect(parseConfigValue(field("epochs", "float"), "two")).toBe("two");
  });

  it("shows config values as text, and labels fields people can read", () => {
    expect(formatConfigValue(["q_proj", "v_proj"])).toBe("q_proj, v_proj");
    expect(formatConfigValue(null)).toBe("");
    expect(hyperparameterLabel("eval_steps")).toBe("Eval every N steps");
    expect(hyperparameterLabel("some_new_knob")).toBe("Some new knob");
    expect(isLoraOnly(field("lora_r", "int"))).toBe(true);
    expect(isLoraOnly(field("merge_adapter", "bool"))).toBe(true);
    expect(isLoraOnly(field("epochs", "float"))).toBe(false);
  });
});
