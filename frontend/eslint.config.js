import { readdirSync } from "node:fs";
import js from "@eslint/js";
import { createNodeResolver, importX } from "eslint-plugin-import-x";
import reactHooks from "eslint-plugin-react-hooks";
import globals from "globals";
import tseslint from "typescript-eslint";

// The dashboard's layers import one way: app -> features -> shared (api, components, lib, test).
// A feature never imports another feature: what two of them need moves to shared, and pages are
// composed in app/. Every folder under src/features is a feature, so a new one is covered the
// day it appears.
const features = readdirSync(new URL("./src/features", import.meta.url), { withFileTypes: true })
  .filter((entry) => entry.isDirectory())
  .map((entry) => entry.name);
const shared = ["./src/api", "./src/components", "./src/lib", "./src/test"];

const boundaries = [
  ...features.map((feature) => ({
    target: `./src/features/${feature}`,
    from: "./src/features",
    except: [`./${feature}`],
    message: `features/${feature} may not import another feature: move what both need to api/, components/ or lib/, or compose them in app/.`,
  })),
  {
    target: "./src/features",
    from: ["./src/app", "./src/main.tsx"],
    message: "Features may not import the app; the app imports features.",
  },
  {
    target: shared,
    from: ["./src/features", "./src/app", "./src/main.tsx"],
    message: "Shared code (api/, components/, lib/) may not import features or the app.",
  },
];

export default tseslint.config(
  { ignores: ["dist/", "node_modules/", "src/api/schema.d.ts"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  reactHooks.configs.flat.recommended,
  {
    files: ["**/*.{ts,tsx}"],
    languageOptions: { globals: { ...globals.browser } },
    plugins: { "import-x": importX },
    settings: {
      "import-x/resolver-next": [createNodeResolver({ extensions: [".ts", ".tsx", ".js"] })],
    },
    rules: {
      "import-x/no-restricted-paths": ["error", { zones: boundaries }],
      // An import the resolver cannot follow would slip past the boundaries unseen.
      "import-x/no-unresolved": ["error", { ignore: ["\\.css$"] }],
      "import-x/no-cycle": "error",
    },
  },
  {
    files: ["*.config.{js,ts}"],
    languageOptions: { globals: { ...globals.node } },
  },
);
