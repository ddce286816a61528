// floe diff: compares two checkpoints by what they hold, not how: the same
// tensors with the same dtypes, shapes and global values (whichever engines
// and world sizes wrote them), the same scalars, and with --blobs the same
// per-rank blobs. Exit 0 when equal (within a tolerance, if given), 1 when
// not, 2 on a usage error.
#include <cmath>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "cli/cli_common.hpp"
#include "cli/cli_format.hpp"
#include "cli/commands.hpp"
#include "cli/diff_data.hpp"
#include "core/shape_text.hpp"
#include "floe/checkpoint.hpp"
#ifdef FLOE_CLI_HF
#include "cli/hf_dir.hpp"
#endif

namespace floe::cli {

const char kDiffSummary[] =
    "Compare two checkpoints' tensors, scalars and blobs by value.";

namespace {

namespace fs = std::filesystem;

const char kDiffHelp[] =
    "\n\nA and B are checkpoint directories; any engines, any world sizes. "
    "Tensors are\ncompared by global value, read in chunks split across the "
    "ranks under mpirun.\nValues compare bitwise by default (so +0 and -0 "
    "differ, and NaNs are equal\nonly with the same bits). With --atol or "
    "--rtol, floating-point values a, b\n(F16 and BF16 widened to F32) are "
    "equal when both are NaN, a == b, or\n|a - b| <= atol + rtol * |b|; "
    "integer, bool and F8 values still compare\nexactly, numeric scalars use "
    "the same test. Metadata and step/epoch are shown,\nnot compared. Exit "
    "status: 0 equal, 1 different (or an error), 2 usage.\n\nEither side may "
    "be Hugging Face weights (a directory with model.safetensors\nor "
    "model.safetensors.index.json and no manifest.json). Against a "
    "checkpoint,\nonly its model tensors are compared, named as export-hf "
    "names them\n(--strip-prefix) and cast to the export's dtype where it "
    "differs (as export-hf\n--dtype casts); scalars and blobs are not "
    "compared.";

std::string describe(const fs::path& dir, const Manifest& m) {
  if (m.world_size == 0) {  // Hugging Face weights opened as a checkpoint
    return dir.string() + " (Hugging Face safetensors, " +
           counted(m.files.size(), "file") + ", " +
           counted(m.tensors.size(), "tensor") + ")";
  }
  return dir.string() + " (" + m.engine + ", step " + std::to_string(m.step) +
         ", epoch " + std::to_string(m.epoch) + ", world size " +
         std::to_string(m.world_size) + ")";
}

void print_capped(const std::vector<std::string>& lines, std::size_t max) {
  for (std::size_t i = 0; i < lines.size() && i < max; ++i)
    out() << lines[i] << "\n";
  if (lines.size() > max)
    out() << "... and " << lines.size() - max << " more\n";
}

std::string number_text(double x) {
  char text[32];
  std::snprintf(text, sizeof text, "%.6g", x);
  return text;
}

// Tensors on one side only or with another dtype or shape (lines), and the
// pairs whose values can be compared.
std::vector<std::string> match_tensors(const Manifest& a, const Manifest& b,
                                       std::vector<TensorPair>& pairs) {
  std::vector<std::string> lines;
  for (const auto& ta : a.tensors) {
    const TensorRecord* tb = b.find(ta.spec.key());
    if (!tb) {
      lines.push_back("tensor " + ta.spec.key() + ": only in a");
    } else if (tb->spec.dtype != ta.spec.dtype ||
               tb->spec.shape != ta.spec.shape) {
      lines.push_back("tensor " + ta.spec.key() + ": " +
                      shape_text(ta.spec.dtype, ta.spec.shape) + " in a, " +
                      shape_text(tb->spec.dtype, tb->spec.shape) + " in b");
    } else {
      pairs.push_back({&ta, tb});
    }
  }
  for (const auto& tb : b.tensors) {
    if (!a.find(tb.spec.key())) {
      lines.push_back("tensor " + tb.spec.key() + ": only in b");
    }
  }
  return lines;
}

std::vector<std::string> compare_scalars(const Manifest& a, const Manifest& b,
                                         const Tolerance& tolerance,
                                         std::size_t& compared) {
  std::set<std::string> names;
  for (const auto& item : a.scalars.items()) names.insert(item.key());
  for (const auto& item : b.scalars.items()) names.insert(item.key());
  std::vector<std::string> lines;
  for (const auto& name : names) {
    const bool in_a = a.scalars.contains(name), in_b = b.scalars.contains(name);
    if (!in_a || !in_b) {
      lines.push_back("scalar " + name + ": only in " + (in_a ? "a" : "b"));
      continue;
    }
    ++compared;
    const auto& x = a.scalars[name];
    const auto& y = b.scalars[name];
    bool same = x == y;
    if (!same && tolerance.numeric && x.is_number() && y.is_number()) {
      const double dx = x.get<double>(), dy = y.get<double>();
      same =
          std::fabs(dx - dy) <= tolerance.atol + tolerance.rtol * std::fabs(dy);
    }
    if (!same)
      lines.push_back("scalar " + name + ": a=" + x.dump() + " b=" + y.dump());
  }
  return lines;
}

DiffOptions parse_diff_options(const po::variables_map& vm) {
  DiffOptions options;
  for (const char* name : {"atol", "rtol"}) {
    if (!vm.count(name)) continue;
    const double value = vm[name].as<double>();
    if (!(value >= 0) || std::isinf(value)) {
      throw UsageError(std::string("--") + name +
                       " must be a finite number >= 0");
    }
    (name[0] == 'a' ? options.tolerance.atol : options.tolerance.rtol) = value;
    options.tolerance.numeric = true;
  }
  options.max_report = vm["max-report"].as<std::size_t>();
  options.chunk_bytes = vm["chunk-bytes"].as<std::uint64_t>();
  if (options.chunk_bytes == 0) throw UsageError("--chunk-bytes must be > 0");
  return options;
}

}  // namespace

int run_diff(const std::vector<std::string>& args) {
  CommandLine line;
  line.usage = "floe diff A B [--atol X] [--rtol X] [--blobs] [--max-report N]";
  line.summary = std::string(kDiffSummary) + kDiffHelp;
  line.options.add_options()("atol", po::value<double>(),
                             "Absolute tolerance for float values. Default: "
                             "bitwise comparison.")(
      "rtol", po::value<double>(),
      "Relative tolerance (of |b|) for float values. Default: bitwise "
      "comparison.")("blobs",
                     "Also compare the per-rank blobs, by rank and name.")(
      "max-report", po::value<std::size_t>()->default_value(10),
      "List at most N differences of each kind.")(
      "chunk-bytes",
      po::value<std::uint64_t>()->default_value(DiffOptions{}.chunk_bytes),
      "Bytes each rank reads from each checkpoint at once.")(
      "strip-prefix", po::value<std::string>(),
      "Against Hugging Face weights: remove this prefix from the "
      "checkpoint's\ntensor names first (as export-hf --strip-prefix).")(
      "a", po::value<std::string>()->required(), "The first checkpoint.")(
      "b", po::value<std::string>()->required(), "The second checkpoint.");
  line.positional.add("a", 1).add("b", 1);
  const auto vm = parse_command_line(line, args);
  if (!vm) return 0;
  const DiffOptions options = parse_diff_options(*vm);
  const fs::path dir_a = (*vm)["a"].as<std::string>();
  const fs::path dir_b = (*vm)["b"].as<std::string>();

  const Comm comm(MPI_COMM_WORLD);
#ifdef FLOE_CLI_HF
  const DiffSides sides = open_diff_sides(
      dir_a, dir_b, comm,
      vm->count("strip-prefix") ? (*vm)["strip-prefix"].as<std::string>() : "");
  if (sides.hf && vm->count("blobs"))
    throw UsageError("--blobs: Hugging Face weights have no blobs");
  const OpenCheckpoint& a = sides.a;
  const OpenCheckpoint& b = sides.b;
#else
  const OpenCheckpoint a = open_checkpoint(dir_a, MPI_COMM_WORLD);
  const OpenCheckpoint b = open_checkpoint(dir_b, MPI_COMM_WORLD);
#endif
  out() << "a: " << describe(dir_a, a.manifest) << "\n"
        << "b: " << describe(dir_b, b.manifest) << "\n";
#ifdef FLOE_CLI_HF
  for (const auto& note : sides.notes) out() << "note: " << note << "\n";
#endif

  std::vector<TensorPair> pairs;
  const auto structure = match_tensors(a.manifest, b.manifest, pairs);
  const ValueReport values =
      compare_tensor_values(*a.reader, *b.reader, pairs, options, comm);
  std::size_t scalars_compared = 0;
  const auto scalars = compare_scalars(a.manifest, b.manifest,
                                       options.tolerance, scalars_compared);
  BlobReport blobs;
  if (vm->count("blobs")) {
    blobs = compare_blobs(*a.reader, a.manifest, *b.reader, b.manifest, comm);
  }

  print_capped(structure, options.max_report);
  print_capped(values.first, options.max_report);
  std::size_t tensors_differ = 0;
  std::uint64_t elements_differ = 0;
  for (std::size_t p = 0; p < pairs.size(); ++p) {
    if (values.differing[p] == 0) continue;
    ++tensors_differ;
    elements_differ += values.differing[p];
    out() << pairs[p].a->spec.key() << ": " << values.differing[p] << " of "
          << num_elements(pairs[p].a->spec.shape) << " elements differ"
          << (options.tolerance.numeric && values.max_abs[p] > 0
                  ? " (max |a-b| " + number_text(values.max_abs[p]) + ")"
                  : "")
          << "\n";
  }
  print_capped(scalars, options.max_report);
  print_capped(blobs.lines, options.max_report);
  if (a.manifest.metadata != b.manifest.metadata) {
    out() << "note: the user metadata differs (not compared)\n";
  }

  const bool equal = structure.empty() && tensors_differ == 0 &&
                     scalars.empty() && blobs.lines.empty();
  out() << "\ntensors: " << pairs.size() << " compared, " << tensors_differ
        << " differ (" << counted(elements_differ, "element") << "), "
        << structure.size()
        << " unmatched (on one side only, or another dtype or shape)\n"
        << "scalars: " << scalars_compared << " compared, " << scalars.size()
        << " differ or on one side only\n";
  if (vm->count("blobs")) {
    out() << "blobs: " << blobs.compared << " compared, " << blobs.lines.size()
          << " differ or on one side only\n";
  } else {
    out() << "blobs: not compared (--blobs compares them)\n";
  }
  std::string mode = "bitwise";
  if (options.tolerance.numeric) {
    mode = "atol " + number_text(options.tolerance.atol) + ", rtol " +
           number_text(options.tolerance.rtol);
  }
  out() << "result: " << (equal ? "equal" : "different") << " (" << mode
        << ")\n";
  return equal ? 0 : 1;
}

}  // namespace floe::cli
