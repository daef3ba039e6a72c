// How the new-run form presents the engine's config. The fields, their types, defaults, choices,
// help and the presets' values all come from GET /runs/config-options/ (the engine's TrainConfig);
// only the wording of labels lives here.
import type { Hyperparameter } from "../../api/types";

const LABELS: Record<string, string> = {
  epochs: "Epochs",
  max_steps: "Max steps",
  learning_rate: "Learning rate",
  lr_schedule: "Schedule",
  warmup_ratio: "Warmup ratio",
  batch_size: "Batch size",
  gradient_accumulation_steps: "Gradient accumulation",
  max_seq_length: "Max sequence length",
  weight_decay: "Weight decay",
  max_grad_norm: "Gradient clipping",
  seed: "Seed",
  validation_split: "Validation split",
  eval_steps: "Eval every N steps",
  save_steps: "Save every N steps",
  keep_checkpoints: "Keep last K checkpoints",
  early_stopping_patience: "Early stopping patience",
  early_stopping_threshold: "Early stopping threshold",
  precision: "Precision",
  packing: "Packing",
  train_on_prompt: "Train on prompts too",
  gradient_checkpointing: "Gradient checkpointing",
  lora_r: "LoRA rank",
  lora_alpha: "LoRA alpha",
  lora_dropout: "LoRA dropout",
  lora_target_modules: "LoRA target modules",
  merge_adapter: "Merge the adapter",
  eval_generations: "Rows evaluated after training",
  max_new_tokens: "Max answer tokens (evaluation)",
  device: "Device",
  // The preference presets are named after their objectives, which are acronyms.
  dpo: "DPO",
  orpo: "ORPO",
  kto: "KTO",
};

export const PRESET_SUMMARIES: Record<string, string> = {
  quick: "Minutes on a CPU: checks the data and the pipeline.",
  balanced: "The engine's defaults: a sensible start for a few hundred to a few thousand rows.",
  thorough: "More epochs and a larger adapter, with early stopping on eval loss.",
  dpo: "Preference pairs: prefer the chosen answer over the rejected one, measured against the starting model. Start from an earlier run (run:<id>) to improve it.",
  orpo: "Preference pairs without a reference model: the chosen answer's loss plus an odds-ratio term.",
  kto: "Unpaired answers labelled good or bad (thumbs up and down), measured against the starting model.",
};

export function hyperparameterLabel(name: string): string {
  return LABELS[name] ?? name.replace(/_/g, " ").replace(/^./, (c) => c.toUpperCase());
}

/** Fields that only mean something for LoRA runs. */
export function isLoraOnly(field: Hyperparameter): boolean {
  return field.name.startsWith("lora_") || field.name === "merge_adapter";
}

/** A config value as the form's text. */
export function formatConfigValue(value: unknown): string {
  if (value === null || value === undefined) return "";
  if (Array.isArray(value)) return value.join(", ");
  return String(value);
}

/**
 * The form's text as the API's value: numbers for int/float, booleans, lists from comma-separated
 * text; empty text is null for a nullable field (the engine derives it). A number the browser
 * cannot read goes as text, so the API names the field and the problem.
 */
export function parseConfigValue(field: Hyperparameter, raw: string): unknown {
  const text = raw.trim();
  if (text === "" && field.nullable) return null;
  switch (field.type) {
    case "int":
    case "float":
      return text !== "" && Number.isFinite(Number(text)) ? Number(text) : text;
    case "bool":
      return text === "true";
    case "list":
      return text.split(",").map((s) => s.trim()).filter(Boolean);
    default:
      return text;
  }
}
