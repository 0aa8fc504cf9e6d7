#include "nft_session.hpp"

#include <nftables/libnftables.h>

#include <cerrno>

#include "session_hint.hpp"

namespace flowshaper::kernel::nft {

void Session::Free::operator()(nft_ctx* ctx) const {
    nft_ctx_free(ctx);
}

Result<Session> Session::open(bool json_output) {
    std::unique_ptr<nft_ctx, Free> ctx(nft_ctx_new(NFT_CTX_DEFAULT));
    if (!ctx) return make_error("initialise", "libnftables", ENOMEM, "nft_ctx_new failed");
    if (nft_ctx_buffer_output(ctx.get()) != 0 || nft_ctx_buffer_error(ctx.get()) != 0)
        return make_error("initialise", "libnftables", ENOMEM, "cannot buffer the library's output");
    Session session(std::move(ctx));
    session.json_output(json_output);
    return session;
}

void Session::json_output(bool on) {
    unsigned flags = NFT_CTX_OUTPUT_NUMERIC_ALL;
    if (on) flags |= NFT_CTX_OUTPUT_JSON;
    nft_ctx_output_set_flags(ctx_.get(), flags);
}

namespace {

// The errno the library's message stands for (it reports text, not numbers).
int errno_of(const std::string& text) {
    const std::pair<const char*, int> known[] = {
        {"Operation not permitted", EPERM},      {"Permission denied", EACCES},
        {"No such file or directory", ENOENT},   {"Protocol not supported", EPROTONOSUPPORT},
        {"Operation not supported", EOPNOTSUPP}, {"File exists", EEXIST},
        {"Device or resource busy", EBUSY},      {"Could not process rule", EINVAL}};
    for (const auto& [needle, err] : known)
        if (text.find(needle) != std::string::npos) return err;
    return EINVAL;
}

std::string hint(int err) {
    const char* unsupported =
        "the kernel lacks nf_tables or one of its expressions: use firewall = \"iptables\"";
    return detail::session_hint(err, {{EPROTONOSUPPORT, unsupported}, {EOPNOTSUPP, unsupported}});
}

}  // namespace

Result<std::string> Session::run(const std::string& commands, const std::string& operation,
                                 const std::string& object) {
    const int rc = nft_run_cmd_from_buffer(ctx_.get(), commands.c_str());
    std::string out = nft_ctx_get_output_buffer(ctx_.get());
    if (rc == 0) return out;
    std::string text = nft_ctx_get_error_buffer(ctx_.get());
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
    if (text.empty()) text = "libnftables failed without a message";
    const int err = errno_of(text);
    return make_error(operation, object, err, text + hint(err));
}

}  // namespace flowshaper::kernel::nft
