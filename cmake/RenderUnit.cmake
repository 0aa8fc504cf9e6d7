# Runs at install time (install(CODE) in Packaging.cmake): renders examples/flowshaper.service.in
# with the directories of this install. CMAKE_INSTALL_PREFIX is the install's own prefix here
# (cmake --install --prefix, or cpack's packaging prefix), DESTDIR not included.
function(flowshaper_full_dir out dir)
  if(IS_ABSOLUTE "${dir}")
    set(${out} "${dir}" PARENT_SCOPE)
  else()
    set(${out} "${CMAKE_INSTALL_PREFIX}/${dir}" PARENT_SCOPE)
  endif()
endfunction()

flowshaper_full_dir(CMAKE_INSTALL_FULL_SBINDIR "${FLOWSHAPER_SBINDIR}")
# GNUInstallDirs' rule for the configuration directory: /etc for the prefixes / and /usr,
# /etc/opt/<x> for /opt/<x>, <prefix>/etc otherwise.
if(IS_ABSOLUTE "${FLOWSHAPER_SYSCONFDIR}")
  set(CMAKE_INSTALL_FULL_SYSCONFDIR "${FLOWSHAPER_SYSCONFDIR}")
elseif(CMAKE_INSTALL_PREFIX MATCHES "^/(usr/?)?$")
  set(CMAKE_INSTALL_FULL_SYSCONFDIR /etc)
elseif(CMAKE_INSTALL_PREFIX MATCHES "^/opt/")
  set(CMAKE_INSTALL_FULL_SYSCONFDIR "/etc${CMAKE_INSTALL_PREFIX}")
else()
  flowshaper_full_dir(CMAKE_INSTALL_FULL_SYSCONFDIR "${FLOWSHAPER_SYSCONFDIR}")
endif()
string(REGEX REPLACE "//+" "/" CMAKE_INSTALL_FULL_SBINDIR "${CMAKE_INSTALL_FULL_SBINDIR}")
configure_file("${FLOWSHAPER_UNIT_IN}" "${FLOWSHAPER_UNIT_OUT}" @ONLY)
message(STATUS "Rendered flowshaper.service: ${CMAKE_INSTALL_FULL_SBINDIR}/flowshaper, "
               "${CMAKE_INSTALL_FULL_SYSCONFDIR}/flowshaper/flowshaper.toml")
