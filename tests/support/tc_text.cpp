#include "tc_text.hpp"

#include <sstream>

namespace flowshaper::testing {

namespace {

std::string word_after(const std::string& line, const std::string& key) {
    auto pos = line.find(" " + key + " ");
    if (pos == std::string::npos) return {};
    pos += key.size() + 2;
    return line.substr(pos, line.find(' ', pos) - pos);
}

}  // namespace

std::map<std::string, TcClass> tc_class_table(const Netns& ns, const std::string& dev) {
    std::istringstream in(ns.exec_ok("tc -s class show dev " + dev));
    std::map<std::string, TcClass> out;
    TcClass* current = nullptr;
    for (std::string line; std::getline(in, line);) {
        if (line.rfind("class ", 0) == 0 && line.rfind("class htb ", 0) != 0) {
            current = nullptr;  // a leaf's own classes (fq_codel and sfq list their active flows)
        } else if (line.rfind("class htb ", 0) == 0) {
            std::istringstream words(line);
            std::string cls, kind, handle;
            words >> cls >> kind >> handle;
            current = &out[handle];
            current->parent = line.find(" root ") != std::string::npos ? "root" : word_after(line, "parent");
            current->rate = word_after(line, "rate");
            current->ceil = word_after(line, "ceil");
        } else if (current && line.find(" Sent ") == 0) {
            std::istringstream words(line);
            std::string sent, bytes_word, pkt_word;
            words >> sent >> current->bytes >> bytes_word >> current->packets >> pkt_word;
            auto dropped = line.find("(dropped ");  // " Sent 1 bytes 1 pkt (dropped 0, overlimits 0 ..."
            if (dropped != std::string::npos) current->drops = std::stoull(line.substr(dropped + 9));
        }
    }
    return out;
}

std::string tc_flowid_of(const Netns& ns, const std::string& dev, const std::string& needle) {
    std::string text = ns.exec_ok("tc filter show dev " + dev);
    auto pos = text.find(needle);
    if (pos == std::string::npos) return {};
    auto head = text.rfind("flowid ", pos);
    auto node = text.rfind("\nfilter ", pos);
    if (head == std::string::npos || (node != std::string::npos && head < node)) return {};
    head += 7;
    return text.substr(head, text.find_first_of(" \n", head) - head);
}

}  // namespace flowshaper::testing
