// Builds the vendored ES modules of web/viewer/vendor/ from the npm packages pinned in package.json:
//
//   three.mjs          three.js (three.module.js + three.core.js in one file)
//   three-addons.mjs   the few three.js addons the viewer uses: orbit controls, mesh loaders and OBJ's material
//                      library loader
//   spark.mjs          Spark (Gaussian splat renderer; its WASM and sort worker are inlined in its module build)
//
// Every bare `three` import is rewritten to "./three.mjs", so Spark, the addons and web/viewer/viewer.mjs share
// exactly one copy of three.js (two copies would break `instanceof` checks and double the download).
// three.js registers itself as `window.__THREE__` and warns "Multiple instances of Three.js being imported" when
// it is already there. The ComfyUI editor bundles its own three.js (its 3D nodes), so that registration is left
// out of ours: the viewer shares no object with the editor's copy, and the warning would only alarm users.
// The licence of every bundled package is copied next to the modules. Run: `npm ci && npm run build`.
import { copyFile, mkdir, readFile, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const vendor = join(here, "..", "..", "web", "viewer", "vendor");
const packages = join(here, "node_modules");

const version = async (name) => JSON.parse(await readFile(join(packages, name, "package.json"), "utf8")).version;

// Each bundle: an entry module given as source text, the packages it contains (for the banner and licences).
const bundles = [
  {
    file: "three.mjs",
    source: 'export * from "three";',
    contains: ["three"],
  },
  {
    file: "three-addons.mjs",
    source: [
      'export { OrbitControls } from "three/addons/controls/OrbitControls.js";',
      'export { GLTFLoader } from "three/addons/loaders/GLTFLoader.js";',
      'export { MTLLoader } from "three/addons/loaders/MTLLoader.js";',
      'export { OBJLoader } from "three/addons/loaders/OBJLoader.js";',
      'export { PLYLoader } from "three/addons/loaders/PLYLoader.js";',
      'export { STLLoader } from "three/addons/loaders/STLLoader.js";',
    ].join("\n"),
    contains: ["three"],
    threeExternal: true,
  },
  {
    file: "spark.mjs",
    source: 'export * from "@sparkjsdev/spark";',
    contains: ["@sparkjsdev/spark", "fflate"],
    threeExternal: true,
  },
];

// Resolves the bare specifier `three` (not `three/addons/...`) to the sibling vendored file, left unbundled.
const sharedThree = {
  name: "shared-three",
  setup(build) {
    build.onResolve({ filter: /^three$/ }, () => ({ path: "./three.mjs", external: true }));
  },
};

// Leaves three.js's `window.__THREE__` registration out (see the top of this file); fails if three.js changed it.
const REGISTRATION = /if \( typeof window !== 'undefined' \) \{\s*if \( window\.__THREE__ \) \{\s*warn\( 'WARNING: Multiple instances of Three\.js being imported\.' \);\s*\} else \{\s*window\.__THREE__ = REVISION;\s*\}\s*\}/;
const unregisteredThree = {
  name: "unregistered-three",
  setup(build) {
    build.onLoad({ filter: /[\\/]three[\\/]build[\\/]three\.core\.js$/ }, async ({ path }) => {
      const source = await readFile(path, "utf8");
      if (!REGISTRATION.test(source)) throw new Error(`${path}: three.js's window.__THREE__ registration not found`);
      return { contents: source.replace(REGISTRATION, "/* window.__THREE__ registration left out */"), loader: "js" };
    });
  },
};

await rm(vendor, { recursive: true, force: true });
await mkdir(vendor, { recursive: true });

for (const bundle of bundles) {
  const names = await Promise.all(bundle.contains.map(async (name) => `${name} ${await version(name)}`));
  await esbuild.build({
    stdin: { contents: bundle.source, resolveDir: here, loader: "js" },
    outfile: join(vendor, bundle.file),
    bundle: true,
    format: "esm",
    target: "es2022",
    minify: true,
    legalComments: "none", // the full licence texts sit next to the modules instead
    banner: { js: `// ${names.join(", ")} (MIT; licences in this folder). Built by tools/viewer/build.mjs; do not edit.` },
    plugins: bundle.threeExternal ? [sharedThree] : [unregisteredThree],
    logLevel: "warning",
  });
}

const licences = { three: "three.LICENSE", "@sparkjsdev/spark": "spark.LICENSE", fflate: "fflate.LICENSE" };
for (const [name, target] of Object.entries(licences)) {
  await copyFile(join(packages, name, "LICENSE"), join(vendor, target));
}
console.log(`built ${bundles.map((bundle) => bundle.file).join(", ")} into ${vendor}`);
