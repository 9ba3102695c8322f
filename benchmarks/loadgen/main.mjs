// The load generator of hubbub's benchmark suite.
//
//   node main.mjs '{"mode": "fanout", ...}'
//
// Runs one mode of modes.mjs with the spec given as one JSON argument and
// writes JSON lines on stdout: {"mark": NAME} when a measured window opens
// ("start", "held") or closes ("end"), with this process's CPU time in
// seconds ("cpu_s"), so the orchestrator can read the CPU time of the server
// and of this process at those instants (the generator may have exited by the
// time it reads /proc), and last
// {"result": {...}} or {"error": "..."}. Every run is bounded: past
// spec.timeout_s it gives up with an error (exit status 2). The long-poll
// scenario's client is longpoll.c, which speaks the same lines.

import { MODES } from "./modes.mjs";

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

async function main() {
  const spec = JSON.parse(process.argv[2] ?? "{}");
  const mode = MODES[spec.mode];
  if (!mode) throw new Error(`unknown mode ${spec.mode}; modes: ${Object.keys(MODES).join(", ")}`);
  setTimeout(() => {
    emit({ error: `gave up after ${spec.timeout_s} s` });
    process.exit(2);
  }, (spec.timeout_s ?? 120) * 1000).unref();
  const result = await mode(spec, (name) => {
    const { user, system } = process.cpuUsage();
    emit({ mark: name, cpu_s: (user + system) / 1e6 });
  });
  emit({ result });
  process.exit(0);
}

main().catch((err) => {
  emit({ error: String(err?.stack ?? err) });
  process.exit(1);
});
