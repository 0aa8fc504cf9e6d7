// Result<T>: the error-or-value type every module boundary returns.
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace flowshaper {

// One error type for every library failure: which operation, on which object, and why.
struct Error {
    std::string operation;  // "create class", "commit mangle table", ...
    std::string object;     // "eth0 f5:1a", "chain FLOWSHAPER-POST", ...
    int code = 0;           // errno value when the failure came from the kernel, else 0
    std::string detail;     // human text: strerror or a hint the user can act on

    // "create class eth0 f5:1a: Device or resource busy (a filter still points at it)"
    std::string text() const;
};

Error make_error(std::string operation, std::string object, int code, std::string detail = {});

template <typename T>
class [[nodiscard]] Result {
public:
    Result(T value) : v_(std::move(value)) {}      // NOLINT: implicit by design
    Result(Error error) : v_(std::move(error)) {}  // NOLINT: implicit by design

    bool ok() const { return v_.index() == 0; }
    explicit operator bool() const { return ok(); }

    T& value() & { return std::get<0>(v_); }
    const T& value() const& { return std::get<0>(v_); }
    T&& value() && { return std::get<0>(std::move(v_)); }
    T& operator*() & { return value(); }
    const T& operator*() const& { return value(); }
    T* operator->() { return &value(); }
    const T* operator->() const { return &value(); }

    const Error& error() const { return std::get<1>(v_); }

private:
    std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
public:
    Result() = default;
    Result(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT: implicit by design

    bool ok() const { return ok_; }
    explicit operator bool() const { return ok_; }
    const Error& error() const { return error_; }

private:
    Error error_;
    bool ok_ = true;
};

using Status = Result<void>;

}  // namespace flowshaper
