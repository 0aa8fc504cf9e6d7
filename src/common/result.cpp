#include "flowshaper/common/result.hpp"

namespace flowshaper {

std::string Error::text() const {
    std::string out = operation;
    if (!object.empty()) out += " " + object;
    if (!detail.empty()) out += ": " + detail;
    return out;
}

Error make_error(std::string operation, std::string object, int code, std::string detail) {
    return Error{std::move(operation), std::move(object), code, std::move(detail)};
}

}  // namespace flowshaper
