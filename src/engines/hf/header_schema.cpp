#include "engines/hf/header_schema.hpp"

#include <set>

#include <nlohmann/json.hpp>

#include "floe/error.hpp"

namespace floe::hf {
namespace {

using Json = nlohmann::json;

// States follow the schema: the top object, __metadata__'s value and
// object, a tensor's value and object, its shape and data_offsets arrays,
// and the value of an ignored field being skipped.
class HeaderHandler : public nlohmann::json_sax<Json> {
 public:
  HeaderDocument& document() { return doc_; }
  const std::string& error() const { return error_; }

  bool null() override { return scalar("null", true); }
  bool boolean(bool) override { return scalar("a boolean", false); }
  bool number_integer(number_integer_t v) override {
    if (v < 0 && in_list()) {
      return fail(list_name() + " holds the negative number " +
                  std::to_string(v));
    }
    return v < 0 ? scalar("a number", false)
                 : number(static_cast<std::uint64_t>(v));
  }
  bool number_unsigned(number_unsigned_t v) override { return number(v); }
  bool number_float(number_float_t, const string_t& text) override {
    if (in_list())
      return fail(list_name() + " holds " + text + ", not an integer >= 0");
    return scalar("a number", false);
  }
  bool binary(binary_t&) override { return fail("unexpected binary value"); }

  bool string(string_t& s) override {
    if (mode_ == Mode::kMetadataObject) {
      doc_.metadata.emplace_back(std::move(key_), std::move(s));
      return true;
    }
    if (mode_ == Mode::kTensor && key_ == "dtype") {
      entry_.dtype = std::move(s);
      has_dtype_ = true;
      return true;
    }
    return scalar("a string", false);
  }

  bool start_object(std::size_t) override {
    switch (mode_) {
      case Mode::kStart:
        mode_ = Mode::kTop;
        return true;
      case Mode::kMetadataValue:
        mode_ = Mode::kMetadataObject;
        keys_.clear();
        return true;
      case Mode::kTensorValue:
        mode_ = Mode::kTensor;
        keys_.clear();
        entry_ = HeaderEntry{};
        entry_.name = std::move(name_);
        has_dtype_ = has_shape_ = has_offsets_ = false;
        offsets_ = 0;
        return true;
      default:
        return nested("an object");
    }
  }

  bool key(string_t& k) override {
    if (mode_ == Mode::kSkip) return true;  // ignored values are not checked
    if (!keys_.insert(k).second) {
      return fail(mode_ == Mode::kTop
                      ? "key \"" + k + "\" appears twice in the header"
                      : where() + "key \"" + k + "\" appears twice");
    }
    if (mode_ != Mode::kTop) {
      key_ = std::move(k);
      return true;
    }
    mode_ = k == "__metadata__" ? Mode::kMetadataValue : Mode::kTensorValue;
    top_keys_.swap(keys_);  // kept aside while the entry's keys are collected
    name_ = std::move(k);
    return true;
  }

  bool end_object() override {
    switch (mode_) {
      case Mode::kTop:
        mode_ = Mode::kDone;
        return true;
      case Mode::kMetadataObject:
        return back_to_top();
      case Mode::kTensor:
        return finish_entry() && back_to_top();
      case Mode::kSkip:
        return unnest();
      default:
        return fail("unbalanced object");
    }
  }

  bool start_array(std::size_t) override {
    if (mode_ == Mode::kTensor && (key_ == "shape" || key_ == "data_offsets")) {
      const bool shape = key_ == "shape";
      (shape ? has_shape_ : has_offsets_) = true;
      mode_ = shape ? Mode::kShape : Mode::kOffsets;
      return true;
    }
    return nested("an array");
  }

  bool end_array() override {
    if (mode_ == Mode::kShape) {
      mode_ = Mode::kTensor;
      return true;
    }
    if (mode_ == Mode::kOffsets) {
      if (offsets_ != 2) {
        return fail(where() + "data_offsets has " + std::to_string(offsets_) +
                    " numbers, not 2");
      }
      mode_ = Mode::kTensor;
      return true;
    }
    if (mode_ == Mode::kSkip) return unnest();
    return fail("unbalanced array");
  }

  bool parse_error(std::size_t, const std::string&,
                   const nlohmann::detail::exception& ex) override {
    return fail(std::string("invalid JSON: ") + ex.what());
  }

 private:
  enum class Mode {
    kStart,
    kTop,
    kMetadataValue,
    kMetadataObject,
    kTensorValue,
    kTensor,
    kShape,
    kOffsets,
    kSkip,
    kDone
  };
  static constexpr int kMaxSkipDepth = 64;

  bool fail(const std::string& why) {
    if (error_.empty()) error_ = why;
    return false;
  }
  std::string where() const {
    if (mode_ == Mode::kMetadataObject || mode_ == Mode::kMetadataValue) {
      return "__metadata__: ";
    }
    return "tensor \"" + (mode_ == Mode::kTensorValue ? name_ : entry_.name) +
           "\": ";
  }
  bool in_list() const {
    return mode_ == Mode::kShape || mode_ == Mode::kOffsets;
  }
  std::string list_name() const {
    return where() + (mode_ == Mode::kShape ? "shape" : "data_offsets");
  }
  bool number(std::uint64_t v) {
    if (mode_ == Mode::kShape) {
      entry_.shape.push_back(v);
      return true;
    }
    if (mode_ == Mode::kOffsets) {
      if (offsets_ == 2)
        return fail(where() + "data_offsets has more than 2 numbers");
      (offsets_++ == 0 ? entry_.begin : entry_.end) = v;
      return true;
    }
    return scalar("a number", false);
  }
  // A scalar value in the current mode (`is_null` for null).
  bool scalar(const std::string& kind, bool is_null) {
    switch (mode_) {
      case Mode::kSkip:
        return true;
      case Mode::kTensor:
        if (key_ == "dtype")
          return fail(where() + "dtype is " + kind + ", not a string");
        if (key_ == "shape" || key_ == "data_offsets") {
          return fail(where() + key_ + " is " + kind + ", not an array");
        }
        return true;  // another field: ignored, as the reference ignores it
      case Mode::kMetadataValue:
        if (is_null)
          return back_to_top();  // the reference reads null as absent
        return misplaced(kind);
      default:
        return misplaced(kind);
    }
  }
  // An object or array (`kind`) opening where the schema has none.
  bool nested(const std::string& kind) {
    switch (mode_) {
      case Mode::kTensor:
        if (key_ == "dtype" || key_ == "shape" || key_ == "data_offsets") {
          return fail(where() + key_ + " is " + kind + ", which it may not be");
        }
        mode_ = Mode::kSkip;  // the value of an ignored field
        skip_depth_ = 1;
        return true;
      case Mode::kSkip:
        if (++skip_depth_ > kMaxSkipDepth) {
          return fail(where() + "a field is nested deeper than " +
                      std::to_string(kMaxSkipDepth) + " levels");
        }
        return true;
      default:
        return misplaced(kind);
    }
  }
  // A value of `kind` where the schema wants another: the error naming both.
  bool misplaced(const std::string& kind) {
    switch (mode_) {
      case Mode::kMetadataValue:
        return fail("__metadata__ is " + kind + ", not an object of strings");
      case Mode::kMetadataObject:
        return fail("__metadata__: \"" + key_ + "\" is " + kind +
                    ", not a string");
      case Mode::kTensorValue:
        return fail(where() + "is " + kind + ", not an object");
      case Mode::kShape:
      case Mode::kOffsets:
        return fail(list_name() + " holds " + kind + ", not an integer >= 0");
      default:
        return fail("the header is not a JSON object");
    }
  }
  bool unnest() {
    if (--skip_depth_ == 0) mode_ = Mode::kTensor;
    return true;
  }
  bool back_to_top() {
    mode_ = Mode::kTop;
    keys_.swap(top_keys_);
    return true;
  }
  bool finish_entry() {
    if (!has_dtype_) return fail(where() + "missing \"dtype\"");
    if (!has_shape_) return fail(where() + "missing \"shape\"");
    if (!has_offsets_) return fail(where() + "missing \"data_offsets\"");
    doc_.entries.push_back(std::move(entry_));
    return true;
  }

  HeaderDocument doc_;
  Mode mode_ = Mode::kStart;
  std::set<std::string> keys_;      // keys seen in the current object
  std::set<std::string> top_keys_;  // the top object's, while in an entry
  std::string name_;                // the top-level key being read
  std::string key_;  // the current key inside an entry or __metadata__
  HeaderEntry entry_;
  bool has_dtype_ = false, has_shape_ = false, has_offsets_ = false;
  int offsets_ = 0;
  int skip_depth_ = 0;
  std::string error_;
};

}  // namespace

HeaderDocument parse_header_document(std::string_view json,
                                     const std::string& what) {
  HeaderHandler handler;
  if (!Json::sax_parse(json.begin(), json.end(), &handler)) {
    throw Error(
        ErrorCode::kCorrupt,
        what + ": " +
            (handler.error().empty() ? "invalid header" : handler.error()));
  }
  return std::move(handler.document());
}

}  // namespace floe::hf
