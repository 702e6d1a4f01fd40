# Writes the package's /usr/share/doc/postern/changelog.gz (a Debian changelog with the one
# entry of this build's version, gzip -9n) at build time:
#   cmake -DVERSION_FILE=.. -DSOURCE_DIR=.. -DMAINTAINER=.. -DOUTPUT=changelog.gz -P changelog.cmake
file(READ "${VERSION_FILE}" version)
string(STRIP "${version}" version)
find_program(GIT git)
set(date "")
if(GIT)
  execute_process(COMMAND "${GIT}" log -1 --format=%aD WORKING_DIRECTORY "${SOURCE_DIR}"
                  OUTPUT_VARIABLE date OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
endif()
if(NOT date)
  execute_process(COMMAND date -R OUTPUT_VARIABLE date OUTPUT_STRIP_TRAILING_WHITESPACE)
endif()
set(text "postern (${version}) unstable; urgency=medium\n\n  * Built by scripts/package from the Postern source tree.\n  * Version ${version}; the changes are in the project's git history.\n\n -- ${MAINTAINER}  ${date}\n")
file(WRITE "${OUTPUT}.txt" "${text}")
execute_process(COMMAND gzip -9nf "${OUTPUT}.txt" RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "gzip failed")
endif()
file(RENAME "${OUTPUT}.txt.gz" "${OUTPUT}")
