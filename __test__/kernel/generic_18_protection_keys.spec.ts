// generic_18: queue threads take the kernel's default memory protection key
// rights (crates/ublk-core/src/protection_keys.rs). The Rust unit tests that
// check it need a CPU whose OS enabled protection keys, which the test guest's
// has and a build machine's may not, so they run again here: `npm test` names
// the executable cargo built (UBLK_CORE_TEST_BINARY).
import test from 'ava'
import { readFileSync } from 'node:fs'
import { run } from './helpers'

test('the protection-key tests pass on this CPU, taking the write path where the OS enabled the keys', (t) => {
  const binary = process.env.UBLK_CORE_TEST_BINARY
  if (!binary) return t.fail("UBLK_CORE_TEST_BINARY is unset: run the kernel tests with `npm test`, which names ublk-core's test executable")
  const ospke = /^flags\s*:.*\bospke\b/m.test(readFileSync('/proc/cpuinfo', 'utf8'))
  if (process.env.UBLK_VM_GUEST) t.true(ospke, "the test guest's CPU has protection keys enabled")
  const out = run(binary, ['protection_keys', '--test-threads=1'])
  const result = out.match(/^test result: ok\. (\d+) passed; 0 failed/m)
  t.truthy(result, out)
  t.true(Number(result?.[1]) >= 3, `every protection-key test ran:\n${out}`)
  t.log(ospke ? 'OSPKE: the rights were read and written' : 'no OSPKE on this CPU: only the fallback ran')
})
