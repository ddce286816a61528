// Where a reader's requests lie in its data file, without reading them: what
// a two-phase load (commit/exchange_read) needs from a reader to read the
// file in large contiguous parts itself and hand each rank its bytes.
#pragma once

#include <vector>

#include "floe/engine.hpp"
#include "io/gathered_read.hpp"

namespace floe {

// Implemented by a CheckpointReader whose reads of the manifest's tensors
// are plain reads of one data file (hdf5 and mpiio while they read
// independently); found with dynamic_cast.
class RunPlanner {
 public:
  virtual ~RunPlanner() = default;

  // The one file every run of append_runs() lies in; null when the
  // checkpoint's tensors are not all read from one file with plain reads
  // (the reader then reads them itself). The same on every rank: it
  // depends on the manifest alone. Valid as long as the reader.
  virtual const ReadOnlyFile* exchange_file() = 0;

  // Appends the runs of `request` (append_run: merged where they continue
  // each other in the file and memory), the bytes read() would read and
  // where they would go, reading nothing; false, with nothing appended,
  // when the request is not read with plain reads of exchange_file() (a
  // record that is not the manifest's). Throws what read() would throw
  // before reading (a box outside the tensor, a storage offset beyond the
  // file); the runs appended before it stay.
  virtual bool append_runs(const CheckpointReader::ReadRequest& request,
                           std::vector<FileRun>& runs) = 0;
};

}  // namespace floe
