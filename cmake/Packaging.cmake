# What `cmake --install` stages and what `cpack -G DEB` (from the build folder) packages: the same
# files. The binary goes to sbin (src/cli); here: manual pages (gzip -9n, as Debian wants them),
# example policies, the systemd unit, and the copyright and changelog files a .deb must carry.

# --- Manual pages, compressed without a timestamp (reproducible) ------------------------------
find_program(GZIP_EXECUTABLE gzip REQUIRED)
set(man_gz)
foreach(page flowshaper.8 flowshaper.toml.5)
  add_custom_command(OUTPUT ${PROJECT_BINARY_DIR}/man/${page}.gz
                     COMMAND ${CMAKE_COMMAND} -E make_directory ${PROJECT_BINARY_DIR}/man
                     COMMAND ${GZIP_EXECUTABLE} -9nc ${PROJECT_SOURCE_DIR}/man/${page} > ${PROJECT_BINARY_DIR}/man/${page}.gz
                     DEPENDS ${PROJECT_SOURCE_DIR}/man/${page}
                     COMMENT "Compressing man/${page}")
  list(APPEND man_gz ${PROJECT_BINARY_DIR}/man/${page}.gz)
endforeach()
add_custom_target(manpages ALL DEPENDS ${man_gz})
install(FILES ${PROJECT_BINARY_DIR}/man/flowshaper.8.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man8)
install(FILES ${PROJECT_BINARY_DIR}/man/flowshaper.toml.5.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man5)

install(DIRECTORY policies/ DESTINATION ${CMAKE_INSTALL_DATADIR}/flowshaper/policies)

# --- The systemd unit ---------------------------------------------------------------------------
# Where systemd looks for system units (Debian 12: /lib/systemd/system); under the prefix when
# systemd's pkg-config file is absent.
pkg_get_variable(systemd_unitdir systemd systemdsystemunitdir)
if(NOT systemd_unitdir)
  set(systemd_unitdir lib/systemd/system)
endif()
set(FLOWSHAPER_SYSTEMD_UNITDIR ${systemd_unitdir}
    CACHE PATH "Where flowshaper.service is installed (relative: under the install prefix)")
set(FLOWSHAPER_XTABLES_LOCKFILE /run/xtables.lock
    CACHE FILEPATH "iptables-legacy's lock file, which the unit lets the daemon open")
# The unit names the binary and the policy by absolute paths, so it is rendered when it is
# installed, with that install's prefix (cmake --install --prefix P; cpack: /usr), not the one
# the build was configured with.
set(unit_out ${PROJECT_BINARY_DIR}/flowshaper.service)
install(CODE "
  set(FLOWSHAPER_UNIT_IN \"${PROJECT_SOURCE_DIR}/examples/flowshaper.service.in\")
  set(FLOWSHAPER_UNIT_OUT \"${unit_out}\")
  set(FLOWSHAPER_SBINDIR \"${CMAKE_INSTALL_SBINDIR}\")
  set(FLOWSHAPER_SYSCONFDIR \"${CMAKE_INSTALL_SYSCONFDIR}\")
  set(XTABLES_LOCKFILE \"${FLOWSHAPER_XTABLES_LOCKFILE}\")
  include(\"${PROJECT_SOURCE_DIR}/cmake/RenderUnit.cmake\")
")
install(FILES ${unit_out} DESTINATION ${FLOWSHAPER_SYSTEMD_UNITDIR})

# --- Debian's copyright and changelog ------------------------------------------------------------
set(FLOWSHAPER_DEB_MAINTAINER "flowshaper maintainers <flowshaper@packages.example.org>"
    CACHE STRING "The .deb's Maintainer field (and the changelog's signature)")
set(FLOWSHAPER_DEB_RELEASE 1 CACHE STRING "The Debian revision of the package")
# The changelog's date: SOURCE_DATE_EPOCH when set (reproducible builds), else now.
string(TIMESTAMP deb_changelog_date "%a, %d %b %Y %H:%M:%S +0000" UTC)
configure_file(packaging/changelog.Debian.in ${PROJECT_BINARY_DIR}/packaging/changelog.Debian @ONLY)
add_custom_command(OUTPUT ${PROJECT_BINARY_DIR}/packaging/changelog.Debian.gz
                   COMMAND ${GZIP_EXECUTABLE} -9nc ${PROJECT_BINARY_DIR}/packaging/changelog.Debian >
                           ${PROJECT_BINARY_DIR}/packaging/changelog.Debian.gz
                   DEPENDS ${PROJECT_BINARY_DIR}/packaging/changelog.Debian)
add_custom_target(deb_changelog ALL DEPENDS ${PROJECT_BINARY_DIR}/packaging/changelog.Debian.gz)
install(FILES packaging/copyright ${PROJECT_BINARY_DIR}/packaging/changelog.Debian.gz
        DESTINATION ${CMAKE_INSTALL_DOCDIR})

# --- CPack: the .deb --------------------------------------------------------------------------
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME flowshaper)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "${FLOWSHAPER_DEB_MAINTAINER}")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "traffic shaper that caps heavy clients instead of blocking them")
# Lines under 80 characters (lintian: extended-description-line-too-long).
set(CPACK_PACKAGE_DESCRIPTION
    "flowshaper watches conntrack byte accounting, decides from a declarative
TOML policy which flows and which client addresses are heavy, marks their
packets from a constant set of mangle rules, and keeps an HTB class tree on
the egress device with one class per capped client and constant-time
classification (hashed u32, or fw). It also applies static per-client caps.
Everything goes through the netlink and xtables libraries: no tc or
iptables scripts.")
# The package is installed under /usr whatever prefix the build was configured with; DESTDIR
# staging keeps absolute destinations (the unit directory) inside the package.
# (With CPACK_SET_DESTDIR the install runs with CPACK_INSTALL_PREFIX, so both are set.)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_INSTALL_PREFIX /usr)
set(CPACK_SET_DESTDIR ON)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_RELEASE ${FLOWSHAPER_DEB_RELEASE})
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${FLOWSHAPER_DEB_MAINTAINER}")
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "https://flowshaper.example.org/")
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# Only the binary: the tests, benchmarks and their helpers are not installed.
set(CPACK_INSTALL_CMAKE_PROJECTS "${PROJECT_BINARY_DIR};${PROJECT_NAME};ALL;/")
include(CPack)
