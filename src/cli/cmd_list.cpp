// floe list: the checkpoints in an output directory: each committed one
// with its step, epoch, engine, world size and size, which one `latest`
// names, and what else lies there: checkpoints set aside as corrupt and
// the leftovers of interrupted saves (shown, never removed).
#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/cli_common.hpp"
#include "cli/cli_format.hpp"
#include "cli/commands.hpp"
#include "commit/coordinator.hpp"
#include "commit/paths.hpp"
#include "core/comm.hpp"
#include "floe/error.hpp"

namespace floe::cli {

const char kListSummary[] =
    "List the checkpoints in an output directory, and leftovers.";

namespace {

namespace fs = std::filesystem;

struct Row {
  std::string name;  // the directory's name in DIR
  std::optional<std::int64_t> step;
  std::optional<Manifest> manifest;
  std::string state;
};

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.rfind(prefix, 0) == 0;
}

// Whether `rest` is "" or ".<n>": the number Floe appends to a name that is
// taken (<tag>.corrupt.<n>, .deleting-<tag>.<n>).
bool numbered_or_empty(const std::string& rest) {
  return rest.empty() || (rest.size() > 1 && rest[0] == '.' &&
                          rest.find_first_not_of("0123456789", 1) == std::string::npos);
}

// The state of a directory that is not a committed checkpoint, or "" for a
// name Floe does not make. Sets `tag` to the tag it belongs to.
std::string leftover_state(const std::string& name, std::string& tag) {
  const std::pair<const char*, const char*> prefixes[] = {
      {kStagingPrefix, "incomplete"},
      {kDeletingPrefix, "incomplete (being deleted)"},
      {kReplacedPrefix, "incomplete (being replaced)"}};
  for (const auto& [prefix, state] : prefixes) {
    if (starts_with(name, prefix)) {
      tag = name.substr(std::string(prefix).size());
      // .deleting-<tag>.<n>: retention's name when .deleting-<tag> is taken.
      const std::size_t dot = tag.rfind('.');
      if (dot != std::string::npos && numbered_or_empty(tag.substr(dot)) &&
          step_of_tag(tag.substr(0, dot))) {
        tag.erase(dot);
      }
      return state;
    }
  }
  // <tag>.corrupt or <tag>.corrupt.<n>
  const std::size_t at = name.find(kSetAsideSuffix);
  if (at != std::string::npos && step_of_tag(name.substr(0, at))) {
    const std::string rest =
        name.substr(at + std::string(kSetAsideSuffix).size());
    if (numbered_or_empty(rest)) {
      tag = name.substr(0, at);
      return "corrupt (set aside)";
    }
  }
  if (step_of_tag(name)) {
    tag = name;
    return "incomplete (no manifest)";
  }
  return "";
}

// Rank 0: every row, committed or not, ordered by step then name.
std::vector<Row> scan(FileSystem& fs, const fs::path& dir,
                      const std::vector<CheckpointEntry>& committed,
                      const std::optional<std::string>& latest) {
  std::vector<Row> rows;
  for (const auto& entry : committed) {
    Row row{entry.tag, entry.step, std::nullopt,
            latest && *latest == entry.tag ? "latest" : "ok"};
    try {
      row.manifest = Manifest::read(entry.dir, fs);
    } catch (const Error& e) {
      row.state = std::string("bad manifest: ") + e.what();
    }
    rows.push_back(std::move(row));
  }
  for (const auto& name : fs.list(dir)) {
    if (std::any_of(committed.begin(), committed.end(),
                    [&](const auto& e) { return e.tag == name; }))
      continue;
    std::string tag;
    std::string state = leftover_state(name, tag);
    if (state.empty() || !fs.is_directory(dir / name)) continue;
    Row row{name, step_of_tag(tag), std::nullopt, state};
    try {  // a set-aside checkpoint usually still has its manifest
      if (fs.exists(dir / name / kManifestName)) {
        row.manifest = Manifest::read(dir / name, fs);
      }
    } catch (const Error&) {
    }
    rows.push_back(std::move(row));
  }
  std::stable_sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) {
    const auto sa = a.step.value_or(INT64_MAX), sb = b.step.value_or(INT64_MAX);
    return sa != sb ? sa < sb : a.name < b.name;
  });
  return rows;
}

std::uint64_t total_size(const Manifest& m) {
  std::uint64_t sum = 0;
  for (const auto& file : m.files) sum += file.size;
  return sum;
}

nlohmann::json row_json(const Row& row, const fs::path& dir) {
  nlohmann::json j = {{"name", row.name},
                      {"path", (dir / row.name).string()},
                      {"state", row.state},
                      {"step", nullptr}};
  if (row.step) j["step"] = *row.step;
  if (row.manifest) {
    const Manifest& m = *row.manifest;
    j["tag"] = m.tag;
    j["epoch"] = m.epoch;
    j["engine"] = m.engine;
    j["world_size"] = m.world_size;
    j["created_utc"] = m.created_utc;
    j["size_bytes"] = total_size(m);
    j["size"] = human_bytes(total_size(m));
  }
  return j;
}

void print_text(const std::vector<Row>& rows, const fs::path& dir) {
  if (rows.empty()) {
    out() << "no checkpoints in " << dir.string() << "\n";
    return;
  }
  std::vector<std::vector<std::string>> table = {
      {"NAME", "STEP", "EPOCH", "ENGINE", "WORLD", "SIZE", "STATE"}};
  for (const Row& row : rows) {
    const Manifest* m = row.manifest ? &*row.manifest : nullptr;
    table.push_back({row.name, row.step ? std::to_string(*row.step) : "-",
                     m ? std::to_string(m->epoch) : "-", m ? m->engine : "-",
                     m ? std::to_string(m->world_size) : "-",
                     m ? human_bytes(total_size(*m)) : "-", row.state});
  }
  print_table(out(), table);
}

}  // namespace

int run_list(const std::vector<std::string>& args) {
  CommandLine line;
  line.usage = "floe list DIR [--json]";
  line.summary = std::string(kListSummary) +
                 "\n\nDIR is a trainer's output_dir. STATE is \"latest\" (the "
                 "one `latest` names), \"ok\",\n\"corrupt (set aside)\" "
                 "(<tag>.corrupt*, kept by auto-resume) or \"incomplete\"\n"
                 "(an interrupted save; the next save removes it). SIZE sums "
                 "the files the\nmanifest lists.";
  line.options.add_options()("json", "Print the list as JSON.")(
      "dir", po::value<std::string>()->required(), "The output directory.");
  line.positional.add("dir", 1);
  const auto vm = parse_command_line(line, args);
  if (!vm) return 0;

  const fs::path dir = (*vm)["dir"].as<std::string>();
  const auto fs = posix_file_system();
  const Comm comm(MPI_COMM_WORLD);
  collectively(comm, [&] {
    if (comm.rank() != 0) return;
    if (!fs->exists(dir)) {
      throw Error(ErrorCode::kNotFound, "no output directory " + dir.string());
    }
    if (!fs->is_directory(dir)) {
      throw Error(ErrorCode::kInvalidArgument,
                  dir.string() + " is not a directory");
    }
  });
  Coordinator coordinator(*fs, comm, dir);
  const std::vector<CheckpointEntry> committed = coordinator.list();
  std::optional<std::string> latest;
  std::vector<std::string> warnings;
  try {
    latest = coordinator.latest();
  } catch (const Error& e) {  // the same on every rank
    warnings.push_back(e.what());
  }
  if (latest && std::none_of(committed.begin(), committed.end(),
                             [&](const auto& e) { return e.tag == *latest; })) {
    warnings.push_back("latest names " + *latest +
                       ", which is not a committed checkpoint here");
  }
  std::vector<Row> rows;
  collectively(comm, [&] {
    if (comm.rank() == 0) rows = scan(*fs, dir, committed, latest);
  });

  if (vm->count("json")) {
    nlohmann::json list = nlohmann::json::array();
    for (const Row& row : rows) list.push_back(row_json(row, dir));
    nlohmann::json doc = {
        {"dir", dir.string()},
        {"latest", latest ? nlohmann::json(*latest) : nullptr},
        {"checkpoints", list},
        {"warnings", warnings}};
    out() << doc.dump(2) << "\n";
  } else {
    print_text(rows, dir);
    for (const auto& w : warnings) err() << "floe: warning: " << w << "\n";
  }
  return 0;
}

}  // namespace floe::cli
