// Compiles node/contracts/XinyiAnchor.sol with the pinned solc of this directory's
// package-lock.json and writes node/contracts/XinyiAnchor.json (ABI, bytecode, compiler
// version, settings). `node compile.js --check` only compares and exits 1 on any difference
// (run by node/tests/anchor_contract.rs). Not a build step: the JSON is committed.
"use strict";
const fs = require("fs");
const path = require("path");
const solc = require("solc");

const root = path.join(__dirname, "..", "..");
const srcPath = path.join(root, "node", "contracts", "XinyiAnchor.sol");
const outPath = path.join(root, "node", "contracts", "XinyiAnchor.json");
const settings = {
  optimizer: { enabled: true, runs: 200 },
  // No PUSH0 (Shanghai): older EVM chains (FISCO BCOS, ChainMaker, ganache) run it too.
  evmVersion: "paris",
  outputSelection: { "*": { XinyiAnchor: ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } },
};
const input = {
  language: "Solidity",
  sources: { "XinyiAnchor.sol": { content: fs.readFileSync(srcPath, "utf8") } },
  settings,
};
const out = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (out.errors || []).filter((e) => e.severity === "error");
if (errors.length) {
  for (const e of errors) console.error(e.formattedMessage);
  process.exit(1);
}
const c = out.contracts["XinyiAnchor.sol"].XinyiAnchor;
const artifact = {
  contract: "XinyiAnchor",
  source: "node/contracts/XinyiAnchor.sol",
  compiler: "solc " + solc.version(),
  settings: { optimizer: settings.optimizer, evmVersion: settings.evmVersion },
  abi: c.abi,
  bytecode: "0x" + c.evm.bytecode.object,
  deployedBytecode: "0x" + c.evm.deployedBytecode.object,
};
const text = JSON.stringify(artifact, null, 2) + "\n";
if (process.argv.includes("--check")) {
  const committed = fs.existsSync(outPath) ? fs.readFileSync(outPath, "utf8") : "";
  if (committed !== text) {
    console.error("node/contracts/XinyiAnchor.json differs from a fresh compile with " + artifact.compiler + "; run `node tests/evm/compile.js`");
    process.exit(1);
  }
  console.log("XinyiAnchor.json matches " + artifact.compiler);
} else {
  fs.writeFileSync(outPath, text);
  console.log("wrote " + path.relative(root, outPath) + " (" + artifact.compiler + ")");
}
