// The convergence logic of the mangle port, shared by the real port and the fake: compare the
// snapshot with the spec, edit only flowshaper's chain and jump, commit once, retry on EAGAIN.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>

#include "flowshaper/kernel/mangle_port.hpp"
#include "mangle_table.hpp"

namespace flowshaper::kernel::mangle {

class MangleEngine {
public:
    MangleEngine(MangleTableSource& source, int max_attempts)
        : source_(source), max_attempts_(max_attempts) {}

    Status ensure(net::Family family, const MangleSpec& spec);
    Status remove_all(net::Family family);
    Result<std::optional<MangleSpec>> read(net::Family family);
    uint64_t commits() const { return commits_; }

private:
    // Edits a fresh snapshot with `edit` (which says whether it changed anything) and commits
    // it when it did; on EAGAIN (or EINVAL, see transact) starts over, at most max_attempts_ times.
    Status transact(net::Family family, const std::function<Result<bool>(MangleTable&)>& edit);

    MangleTableSource& source_;
    int max_attempts_;
    uint64_t commits_ = 0;
};

// The edits, exposed for tests. Each returns whether it changed the snapshot.
Result<bool> converge(MangleTable& table, net::Family family, const MangleSpec& spec);
Result<bool> remove_ours(MangleTable& table, net::Family family);
Result<std::optional<MangleSpec>> parse_ours(MangleTable& table, net::Family family);

}  // namespace flowshaper::kernel::mangle
