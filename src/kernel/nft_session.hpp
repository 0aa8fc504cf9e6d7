// One libnftables context (RAII), created in the calling thread's network namespace: text
// commands in, output (JSON when asked) and the library's located error text out.
#pragma once

#include <memory>
#include <string>

#include "flowshaper/common/result.hpp"

struct nft_ctx;

namespace flowshaper::kernel::nft {

class Session {
public:
    // A fresh context (its netlink socket belongs to the namespace current now).
    static Result<Session> open(bool json_output);

    // Switches the output between JSON and text (for the next run()).
    void json_output(bool on);

    // Runs `commands` as one batch (one transaction for its changes). On failure the error
    // carries the operation, the object, an errno guessed from the library's text and the text
    // itself (with the batch's line and column).
    Result<std::string> run(const std::string& commands, const std::string& operation,
                            const std::string& object);

private:
    struct Free {
        void operator()(nft_ctx* ctx) const;
    };
    explicit Session(std::unique_ptr<nft_ctx, Free> ctx) : ctx_(std::move(ctx)) {}
    std::unique_ptr<nft_ctx, Free> ctx_;
};

}  // namespace flowshaper::kernel::nft
