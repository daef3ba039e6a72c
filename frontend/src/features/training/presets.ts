// Offered choices for the new-run form. The server validates every value against the engine's
// config; these only give the form its defaults and help text.
export const BASE_MODEL_PRESETS = [
  { value: "smollm2-135m-instruct", label: "SmolLM2 135M Instruct (offline)" },
];

export interface HyperparameterField {
  name: string;
  label: string;
  help: string;
  kind: "int" | "float" | "bool" | "choice" | "text";
  choices?: string[];
  min?: number;
  step?: number;
  /** Only for LoRA runs. */
  lora?: boolean;
}

export const TRAINING_PRESETS: Record<string, { label: string; help: string; values: Record<string, number | string | boolean> }> = {
  quick: {
    label: "Quick",
    help: "A few minutes on a CPU: checks the data and the pipeline.",
    values: { epochs: 1, learning_rate: 2e-4, batch_size: 8, gradient_accumulation_steps: 1, max_seq_length: 512, lora_r: 8, lora_alpha: 16 },
  },
  balanced: {
    label: "Balanced",
    help: "A sensible default for a few hundred to a few thousand rows.",
    values: { epochs: 3, learning_rate: 2e-4, batch_size: 8, gradient_accumulation_steps: 2, max_seq_length: 1024, lora_r: 16, lora_alpha: 32 },
  },
  thorough: {
    label: "Thorough",
    help: "More epochs, a lower learning rate, early stopping on eval loss.",
    values: { epochs: 5, learning_rate: 1e-4, batch_size: 8, gradient_accumulation_steps: 4, max_seq_length: 1024, lora_r: 32, lora_alpha: 64 },
  },
};

export const ADVANCED_FIELDS: HyperparameterField[] = [
  { name: "epochs", label: "Epochs", help: "Passes over the training rows.", kind: "float", min: 0, step: 0.5 },
  { name: "max_steps", label: "Max steps", help: "Stop after this many optimizer steps (empty: from epochs).", kind: "int", min: 1 },
  { name: "learning_rate", label: "Learning rate", help: "Peak learning rate after warmup.", kind: "float", min: 0, step: 0.00001 },
  { name: "lr_scheduler", label: "Schedule", help: "How the learning rate decays.", kind: "choice", choices: ["cosine", "linear", "constant"] },
  { name: "warmup_ratio", label: "Warmup ratio", help: "Share of steps spent warming up.", kind: "float", min: 0, step: 0.01 },
  { name: "batch_size", label: "Batch size", help: "Rows per device step.", kind: "int", min: 1 },
  { name: "gradient_accumulation_steps", label: "Gradient accumulation", help: "Steps summed before each update.", kind: "int", min: 1 },
  { name: "max_seq_length", label: "Max sequence length", help: "Longer rows are truncated.", kind: "int", min: 16 },
  { name: "weight_decay", label: "Weight decay", help: "L2 penalty on weights.", kind: "float", min: 0, step: 0.01 },
  { name: "max_grad_norm", label: "Gradient clipping", help: "Max gradient norm.", kind: "float", min: 0, step: 0.1 },
  { name: "seed", label: "Seed", help: "Same seed, same data: same losses.", kind: "int", min: 0 },
  { name: "eval_steps", label: "Eval every N steps", help: "Held-out loss cadence.", kind: "int", min: 1 },
  { name: "save_steps", label: "Save every N steps", help: "Checkpoint cadence.", kind: "int", min: 1 },
  { name: "save_total_limit", label: "Keep last K checkpoints", help: "Older ones are deleted (the best is kept).", kind: "int", min: 1 },
  { name: "early_stopping_patience", label: "Early stopping patience", help: "Evaluations without improvement before stopping (empty: off).", kind: "int", min: 1 },
  { name: "precision", label: "Precision", help: "bf16 where the hardware supports it.", kind: "choice", choices: ["fp32", "bf16"] },
  { name: "packing", label: "Pack examples", help: "Pack short rows into full sequences.", kind: "bool" },
  { name: "train_on_prompt", label: "Train on prompts too", help: "Loss on prompt tokens as well as answers.", kind: "bool" },
  { name: "validation_split", label: "Validation split", help: "Share of rows held out for eval loss.", kind: "float", min: 0, step: 0.01 },
  { name: "lora_r", label: "LoRA rank", help: "Adapter rank r.", kind: "int", min: 1, lora: true },
  { name: "lora_alpha", label: "LoRA alpha", help: "Adapter scaling.", kind: "int", min: 1, lora: true },
  { name: "lora_dropout", label: "LoRA dropout", help: "Dropout on adapter inputs.", kind: "float", min: 0, step: 0.01, lora: true },
  { name: "lora_target_modules", label: "LoRA target modules", help: "Comma-separated; empty: the architecture's defaults.", kind: "text", lora: true },
];
