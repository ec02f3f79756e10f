// Crash points for the tests of "a kill -9 at any moment of a save leaves nothing half-written" (issue 21).
//
// A test cannot time a kill into a few-millisecond window from outside, so the saves name their steps:
// MULTIREF_FAULT_KILL="<site>:<n>" makes the n-th call of fault_point("<site>") raise SIGKILL — exactly what the
// kernel does to an OOM-killed or `kill -9`ed run; "<site>:<n>:<r>" only in the process whose RANK is r. Unset (every
// real run), a call is one cached comparison.
#pragma once

namespace multiref {

void fault_point(const char* site);

}  // namespace multiref
