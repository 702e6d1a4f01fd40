// posternd entry point.
#include "app/PosternServer.h"

#include <iostream>

POCO_SERVER_MAIN(postern::app::PosternServer)
