// Validates glTF/GLB files with the Khronos glTF Validator and prints one JSON report per file.
//
//   node tests/js/validate_gltf.mjs FILE [FILE ...]
//
// Output: a JSON array of {file, numErrors, numWarnings, numInfos, numHints, errors}, where `errors` lists the
// code, message and pointer of every error-severity issue. Exit status 0 even when files have errors (the
// caller asserts on the counts); 2 when a file cannot be read or parsed at all.
import { readFile } from "node:fs/promises";
import { basename } from "node:path";
import { validateBytes } from "gltf-validator";

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error("usage: node validate_gltf.mjs FILE [FILE ...]");
  process.exit(2);
}

const reports = [];
for (const file of files) {
  let report;
  try {
    const bytes = new Uint8Array(await readFile(file));
    report = await validateBytes(bytes, { uri: basename(file), maxIssues: 100 });
  } catch (error) {
    console.error(`${file}: ${error}`);
    process.exit(2);
  }
  const issues = report.issues;
  reports.push({
    file,
    numErrors: issues.numErrors,
    numWarnings: issues.numWarnings,
    numInfos: issues.numInfos,
    numHints: issues.numHints,
    errors: issues.messages
      .filter((message) => message.severity === 0)
      .map(({ code, message, pointer }) => ({ code, message, pointer })),
  });
}
console.log(JSON.stringify(reports, null, 2));
