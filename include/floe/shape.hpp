// Shape: a tensor's shape, or a box's offset or extent, one number per
// dimension. Held inline up to kInline dimensions, on the heap beyond.
//
// Why not std::vector: a manifest of 20,000 tensors saved by 4 ranks holds
// ~180,000 shapes, and their allocations were ~20% of a load's
// instructions. Why not boost::container::small_vector: measured in the same
// load (callgrind), its move of inline elements goes through generic
// out-of-line code, ~50 instructions a move, and parsing a manifest moves
// each shape a few times: the load ran 9% more instructions than with
// std::vector. This one moves as five words and a pointer.
//
// The interface is the part of std::vector's that shapes need; iterators
// are pointers, invalidated as a vector's are.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <iterator>
#include <stdexcept>
#include <type_traits>

namespace floe {

class Shape {
 public:
  using value_type = std::uint64_t;
  using size_type = std::size_t;
  using difference_type = std::ptrdiff_t;
  using reference = std::uint64_t&;
  using const_reference = const std::uint64_t&;
  using pointer = std::uint64_t*;
  using const_pointer = const std::uint64_t*;
  using iterator = std::uint64_t*;
  using const_iterator = const std::uint64_t*;

  // Dimensions held without a heap allocation.
  static constexpr size_type kInline = 4;

  Shape() = default;
  Shape(std::initializer_list<std::uint64_t> dims) { assign(dims.begin(), dims.end()); }
  // `count` dimensions of `value`.
  explicit Shape(size_type count, std::uint64_t value = 0) { resize(count, value); }
  template <typename InputIt,
            typename = std::enable_if_t<!std::is_integral<InputIt>::value>>
  Shape(InputIt first, InputIt last) {
    assign(first, last);
  }

  Shape(const Shape& other) { assign(other.begin(), other.end()); }
  Shape(Shape&& other) noexcept { take(other); }
  Shape& operator=(const Shape& other) {
    if (this != &other) assign(other.begin(), other.end());
    return *this;
  }
  Shape& operator=(Shape&& other) noexcept {
    if (this != &other) {
      release();
      take(other);
    }
    return *this;
  }
  Shape& operator=(std::initializer_list<std::uint64_t> dims) {
    assign(dims.begin(), dims.end());
    return *this;
  }
  ~Shape() { release(); }

  void assign(size_type count, std::uint64_t value) {
    clear();
    resize(count, value);
  }
  template <typename InputIt,
            typename = std::enable_if_t<!std::is_integral<InputIt>::value>>
  void assign(InputIt first, InputIt last) {
    clear();
    if constexpr (std::is_base_of<std::forward_iterator_tag,
                                  typename std::iterator_traits<InputIt>::iterator_category>::value) {
      const auto count = static_cast<size_type>(std::distance(first, last));
      reserve(count);
      std::transform(first, last, data(), [](const auto& d) { return static_cast<std::uint64_t>(d); });
      size_ = count;
    } else {
      for (; first != last; ++first) push_back(static_cast<std::uint64_t>(*first));
    }
  }

  size_type size() const { return size_; }
  bool empty() const { return size_ == 0; }
  size_type capacity() const { return heap_ ? capacity_ : kInline; }

  std::uint64_t* data() { return heap_ ? heap_ : inline_; }
  const std::uint64_t* data() const { return heap_ ? heap_ : inline_; }
  iterator begin() { return data(); }
  iterator end() { return data() + size_; }
  const_iterator begin() const { return data(); }
  const_iterator end() const { return data() + size_; }
  const_iterator cbegin() const { return begin(); }
  const_iterator cend() const { return end(); }

  std::uint64_t& operator[](size_type i) { return data()[i]; }
  const std::uint64_t& operator[](size_type i) const { return data()[i]; }
  std::uint64_t& at(size_type i) {
    if (i >= size_) throw std::out_of_range("floe::Shape::at");
    return data()[i];
  }
  const std::uint64_t& at(size_type i) const {
    if (i >= size_) throw std::out_of_range("floe::Shape::at");
    return data()[i];
  }
  std::uint64_t& front() { return data()[0]; }
  const std::uint64_t& front() const { return data()[0]; }
  std::uint64_t& back() { return data()[size_ - 1]; }
  const std::uint64_t& back() const { return data()[size_ - 1]; }

  void reserve(size_type count) {
    if (count <= capacity()) return;
    auto* grown = new std::uint64_t[count];
    std::copy(begin(), end(), grown);
    release();
    heap_ = grown;
    capacity_ = count;
  }
  void push_back(std::uint64_t value) {
    if (size_ == capacity()) reserve(2 * size_);
    data()[size_++] = value;
  }
  void pop_back() { --size_; }
  void resize(size_type count, std::uint64_t value = 0) {
    reserve(count);
    if (count > size_) std::fill(data() + size_, data() + count, value);
    size_ = count;
  }
  void clear() { size_ = 0; }
  // Inserts `value` before `at`; returns where it went.
  iterator insert(const_iterator at, std::uint64_t value) {
    const auto i = static_cast<size_type>(at - data());
    push_back(value);
    std::rotate(data() + i, data() + size_ - 1, data() + size_);
    return data() + i;
  }
  iterator erase(const_iterator at) {
    const auto i = static_cast<size_type>(at - data());
    std::copy(data() + i + 1, data() + size_, data() + i);
    --size_;
    return data() + i;
  }

  friend bool operator==(const Shape& a, const Shape& b) {
    return a.size_ == b.size_ && std::equal(a.begin(), a.end(), b.begin());
  }
  friend bool operator!=(const Shape& a, const Shape& b) { return !(a == b); }
  friend bool operator<(const Shape& a, const Shape& b) {
    return std::lexicographical_compare(a.begin(), a.end(), b.begin(), b.end());
  }

 private:
  // Moves `other`'s dimensions here (this holds none) and empties it.
  void take(Shape& other) noexcept {
    size_ = other.size_;
    capacity_ = other.capacity_;
    heap_ = other.heap_;
    std::copy(other.inline_, other.inline_ + kInline, inline_);
    other.heap_ = nullptr;
    other.size_ = 0;
  }
  void release() noexcept {
    delete[] heap_;
    heap_ = nullptr;
  }

  std::uint64_t* heap_ = nullptr;  // the dimensions, when more than kInline
  size_type size_ = 0;
  size_type capacity_ = 0;         // of heap_
  std::uint64_t inline_[kInline] = {};  // the dimensions otherwise
};

}  // namespace floe
